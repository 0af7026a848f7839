"""Ray actor calls, measured the way benchmarks/request_reply.py measures beach (run by run.py in
the peers venv): one echo actor, sequential calls and 64 in flight. Prints one JSON line."""

import json
import statistics
import sys
import time

import ray


@ray.remote
class Echo:
    def echo(self, data):
        return data


def main(n_seq: int, n_par: int) -> None:
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", _node_ip_address="127.0.0.1",
             configure_logging=False)
    try:
        actor = Echo.remote()
        ray.get([actor.echo.remote({"n": i}) for i in range(200)])  # warm up
        latencies = []
        start = time.perf_counter()
        for i in range(n_seq):
            t = time.perf_counter()
            ray.get(actor.echo.remote({"n": i}))
            latencies.append(time.perf_counter() - t)
        seq = n_seq / (time.perf_counter() - start)
        start = time.perf_counter()
        pending = [actor.echo.remote({"n": i}) for i in range(64)]
        sent = 64
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            ray.get(done)
            if sent < n_par:
                pending.append(actor.echo.remote({"n": sent}))
                sent += 1
        par = n_par / (time.perf_counter() - start)
        print(json.dumps({"peer": "ray " + ray.__version__, "sequential": seq,
                          "p50_us": statistics.median(latencies) * 1e6, "in_flight_64": par}))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
