"""The benchmarks' shared pieces: a RESP client (resp), the servers they start (servers), their statistics (stats).

Every bench script in bench/ imports from here; its own directory is on sys.path when it runs, so no path
manipulation is needed. Standard library only.
"""
