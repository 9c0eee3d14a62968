"""What several test modules share: frames, directors, namespaces. Test modules import from here,
never from one another."""
