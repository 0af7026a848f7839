"""Thespian (multiprocTCPBase) actor calls, measured like benchmarks/request_reply.py measures
beach (run by run.py in the peers venv): one echo actor, sequential asks and 64 in flight.
Prints one JSON line."""

import json
import socket
import statistics
import sys
import time
from datetime import timedelta

from thespian.actors import Actor, ActorSystem


class Echo(Actor):
    def receiveMessage(self, message, sender):
        if isinstance(message, dict):
            self.send(sender, message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(n_seq: int, n_par: int) -> None:
    system = ActorSystem("multiprocTCPBase", {"Admin Port": free_port()})
    try:
        actor = system.createActor(Echo)
        wait = timedelta(seconds=10)
        for i in range(200):  # warm up
            system.ask(actor, {"n": i}, wait)
        latencies = []
        start = time.perf_counter()
        for i in range(n_seq):
            t = time.perf_counter()
            assert system.ask(actor, {"n": i}, wait) is not None
            latencies.append(time.perf_counter() - t)
        seq = n_seq / (time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(64):
            system.tell(actor, {"n": i})
        sent, received = 64, 0
        while received < n_par:
            if system.listen(wait) is None:
                raise RuntimeError("thespian: a reply did not come within 10 s")
            received += 1
            if sent < n_par:
                system.tell(actor, {"n": sent})
                sent += 1
        par = n_par / (time.perf_counter() - start)
        print(json.dumps({"peer": "thespian multiprocTCPBase", "sequential": seq,
                          "p50_us": statistics.median(latencies) * 1e6, "in_flight_64": par}))
    finally:
        system.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
