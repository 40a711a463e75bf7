package executiontest

// The suite's workloads. Real backends run them with python3; the fake
// backend registers a Go script under each (see backend/fake's tests).
const (
	CodeExit0 = `print("ok")`
	CodeExit7 = `import sys
sys.exit(7)`
	CodeRaise = `raise RuntimeError("boom")`
	// CodeSIGTERM dies by its own SIGTERM.
	CodeSIGTERM = `import os, signal, time
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(30)`
	// CodeDaemonThenHang starts a double-forked, setsid daemon, waits until
	// it runs, then hangs: only a timeout that kills the whole tree ends it.
	CodeDaemonThenHang = daemon + `
print("daemon started", flush=True)
while True:
    time.sleep(1000)`
	// CodeDaemonThenExit starts the same daemon, then exits: the run ends
	// with its main process and the daemon must not survive it.
	CodeDaemonThenExit = daemon + `
print("daemon started", flush=True)`
	// CodeFlood writes endlessly to the stream named by $STREAM.
	CodeFlood = `import os, sys
stream = sys.stdout if os.environ["STREAM"] == "stdout" else sys.stderr
chunk = "x" * 4096
while True:
    stream.write(chunk)
    stream.flush()`
	CodeUpperStdin = `import sys
sys.stdout.write(sys.stdin.read().upper())`
	CodePrintEnv = `import json, os
print(json.dumps(dict(os.environ)))`
	CodeFiles = `import os
data = open("data/in.txt").read()
open("out.txt", "w").write(data[::-1])
os.makedirs("nested/deep", exist_ok=True)
open("nested/deep/out2.txt", "w").write(data.upper())`
	CodeConcurrent = `import os
i = os.environ["INDEX"]
open("index.txt", "w").write(i)
print("run", i)`
	CodeHang = `import time
while True:
    time.sleep(1000)`

	daemon = `import os, time
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.close(r)
        os.write(w, b"x")
        os.close(w)
        while True:
            time.sleep(1000)
    os._exit(0)
os.close(w)
os.read(r, 1)
os.wait()`
)
