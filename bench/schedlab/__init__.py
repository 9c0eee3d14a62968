"""The scheduler laboratory: which IPVS scheduler gives the best response times for a workload.

``python3 -m bench.schedlab`` (__main__): the scenarios (scenarios) run live (live: a real
director in namespaces, real HTTP servers whose service time follows a distribution (server), an
open-loop client (client)) and in a discrete-event model of the same scenarios with the same
scheduler code (model), which scales to 1,000 servers; prequal is a plug-in scheduler shown
beside IPVS's; the results (results: one shape for both) as a table and the model-vs-live
comparison (report), JSON and pictures (plots).
"""
