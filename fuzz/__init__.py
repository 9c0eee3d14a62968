"""Coverage-guided fuzzing of what a director reads from outside: frames, ipvsadm lines, -R
input, TOML and keepalived configs, sync and VRRP messages.

    python3 -m fuzz TARGET [--seconds N]     (needs atheris: pip install -e .[fuzz])

Each target (fuzz/targets.py) takes bytes and may end only in the refusal its reader promises
(UsageError, ConfigError, ValueError, ...); anything else is a finding. The seed corpus in
fuzz/corpus/TARGET is replayed by the normal test run (tests/test_fuzz_corpus.py), and atheris
adds what it finds there; a crash it finds is saved as fuzz/crash-* to become a test.
"""
