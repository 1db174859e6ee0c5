"""Start N local workers of `pipeline.run` as a cluster manager would: each with its TF_CONFIG.

  python -m pipeline.launch --workers=2 -- --flagfile=configs/smoke.flags --workdir=runs/two

Each worker gets a free 127.0.0.1 port and `--strategy=multi_worker`; the chief's (worker 0)
console is streamed here, the others' go to `<workdir>.workers/worker-<i>.log`. If one worker
fails, the others are stopped; if one was killed (a lost machine), the job is started again,
up to --max_restarts times, and resumes from its last backup. Exits with the chief's status.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from absl import flags

from export import cli
from export.cli import fail

WORKERS = flags.DEFINE_integer("workers", 2, "Worker processes to start on this machine.",
                               lower_bound=1)
MAX_RESTARTS = flags.DEFINE_integer("max_restarts", 3, "Start the job again this many times "
                                    "when a worker is killed (it resumes from its backups).",
                                    lower_bound=0)


def free_ports(n: int) -> list:
  socks = [socket.socket() for _ in range(n)]
  try:
    for s in socks:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in socks]
  finally:
    for s in socks:
      s.close()


def tf_config(ports: list, index: int) -> str:
  return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                     "task": {"type": "worker", "index": index}})


def _workdir(args: list) -> str:
  """--workdir among the run's flags (the logs of the other workers go beside it)."""
  for a in args:
    if a.startswith("--workdir="):
      return a.split("=", 1)[1]
  return "runs/launch"


def _start(args: list, logs: str) -> list:
  ports = free_ports(len(range(WORKERS.value)))
  procs = []
  for i in range(WORKERS.value):
    env = dict(os.environ, TF_CONFIG=tf_config(ports, i), PYTHONUNBUFFERED="1")
    out = None if i == 0 else open(os.path.join(logs, f"worker-{i}.log"), "w")
    procs.append(subprocess.Popen([sys.executable, "-m", "pipeline.run",
                                   "--strategy=multi_worker", *args], env=env, stdout=out,
                                  stderr=subprocess.STDOUT if out else None))
  return procs


def _stop(procs: list) -> None:
  for p in procs:
    if p.poll() is None:
      p.send_signal(signal.SIGKILL)
  for p in procs:
    p.wait()


def _wait(procs: list, logs: str) -> int:
  """Waits until all workers exit, or one fails (then stops the rest, saying which and where
  its log is); returns the chief's status, else the failed worker's (negative: a signal)."""
  while True:
    codes = [p.poll() for p in procs]
    if all(c is not None for c in codes):
      return codes[0]
    bad = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
    if bad:
      i, code = min(bad, key=lambda b: b[1])  # A killed worker (signal) first.
      how = f"was killed (signal {-code})" if code < 0 else f"failed (exit status {code})"
      where = "" if i == 0 else f"; its log: {os.path.join(logs, f'worker-{i}.log')}"
      print(f"launch: worker {i} {how}{where}; stopping the others", file=sys.stderr,
            flush=True)
      _stop(procs)
      return code
    time.sleep(0.2)


def main(argv):
  args = argv[1:]
  if not args:
    fail("give the run's flags after --, e.g. python -m pipeline.launch --workers=2 -- "
         "--flagfile=configs/smoke.flags --workdir=runs/two")
  if any(a.startswith("--strategy") for a in args):
    fail("--strategy: the launcher sets --strategy=multi_worker; leave it out")
  logs = os.path.normpath(_workdir(args)) + ".workers"
  os.makedirs(logs, exist_ok=True)
  for attempt in range(MAX_RESTARTS.value + 1):
    if attempt:
      print(f"launch: a worker was lost; starting the job again (restart {attempt} of "
            f"{MAX_RESTARTS.value}), it resumes from its last backup", file=sys.stderr,
            flush=True)
    procs = _start(args, logs)
    print(f"launch: {len(procs)} workers (pids {', '.join(str(p.pid) for p in procs)}); "
          f"worker 0 is the chief, the others log to {logs}", file=sys.stderr, flush=True)
    try:
      code = _wait(procs, logs)
    except KeyboardInterrupt:
      _stop(procs)
      fail("interrupted; the same command resumes the run", status=130)
    if code >= 0:  # Finished, or failed for a reason a restart would not change.
      sys.exit(code)
  fail(f"a worker was lost {MAX_RESTARTS.value + 1} times; giving up (the same command "
       "resumes the run)", status=1)


def run():
  """Console-script entry point. The run's flags come after `--`: without it, absl would read
  them (a --flagfile's too) as the launcher's own."""
  own = ("--workers", "--max_restarts", "-h", "--help", "--helpshort", "--helpfull")
  if "--" not in sys.argv and any(not a.startswith(own) for a in sys.argv[1:]):
    fail("give the run's flags after --, e.g. python -m pipeline.launch --workers=2 -- "
         "--flagfile=configs/smoke.flags --workdir=runs/two")
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
