"""The scheduler laboratory: which IPVS scheduler gives the best response times for a workload.

``python3 -m bench.schedlab``: the scenarios (scenarios) run live (live: a real director in
namespaces, real HTTP servers whose service time follows a distribution, an open-loop client)
and in a discrete-event model of the same scenarios with the same scheduler code (model), which
scales to 1,000 servers; the results (results: one shape for both) as a table, JSON and plots.
"""
