// Command glasshouse-agent is the per-node daemon that observes workloads
// Glasshouse did not launch — other sandboxes, CI jobs, Kubernetes pods —
// with the host eBPF collector, and writes a receipt for each: a final one
// when the workload exits and rolling ones while it runs, with live policy
// evaluation. It only turns flags into an agent.Config and wires the
// collector, sinks, HTTP endpoints and signals; the logic is in agent/.
//
//	glasshouse-agent --select 'container:*' --policy no-network --output stdout
//
// SIGHUP re-reads --config (selection and policy) and the policy files;
// SIGTERM/SIGINT write final receipts for every workload and exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"glasshouse.dev/glasshouse/agent"
	"glasshouse.dev/glasshouse/audit"
	"glasshouse.dev/glasshouse/core/policy"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/internal/cgroup"
	"glasshouse.dev/glasshouse/internal/daemon"
	"glasshouse.dev/glasshouse/store/sqlite"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	selects, outputs                list
	configFile, policyRef           string
	listen, cgroupRoot, storeTenant string
	roll, policyEvery, rescan       time.Duration
	configPoll                      time.Duration
	maxWorkloads, ringBytes         int
	maxWatches                      int
	capFiles, capProcs, capNet      int
	fileMax                         int64
	storeSync                       string
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("glasshouse-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.Var(&o.selects, "select", "cgroups to observe (repeatable): all, /GLOB or glob:/GLOB, pod:UID, pod:*, container:ID, container:*")
	fs.Var(&o.outputs, "output", "receipt sink (repeatable): stdout (NDJSON), file:PATH (NDJSON, rotated), store:DIR (the SQLite store glasshouse-server serves); default stdout")
	fs.StringVar(&o.configFile, "config", "", "YAML file with select and policy, re-read on SIGHUP (its select replaces --select)")
	fs.DurationVar(&o.configPoll, "config-poll", 0, "also re-read --config and policy files when they change, checking this often (0: only on SIGHUP; use in Kubernetes)")
	fs.StringVar(&o.policyRef, "policy", "", "policies to evaluate live: pack names and files, comma separated (re-read on SIGHUP)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:9464", "address of /health, /metrics and /workloads (empty disables)")
	fs.StringVar(&o.cgroupRoot, "cgroup-root", "", "cgroup2 mount (default: detected from /proc/self/mountinfo)")
	fs.StringVar(&o.storeTenant, "store-tenant", "agent", "tenant the store sink records receipts under")
	fs.StringVar(&o.storeSync, "store-sync", "normal", "SQLite synchronous mode of the store sink: normal or full")
	fs.DurationVar(&o.roll, "roll-interval", agent.DefaultRollInterval, "rolling receipt interval for long-lived workloads")
	fs.DurationVar(&o.policyEvery, "policy-interval", agent.DefaultPolicyInterval, "how often workloads with new events are evaluated live")
	fs.DurationVar(&o.rescan, "rescan-interval", agent.DefaultRescanInterval, "full cgroup tree rescan interval (safety net behind inotify)")
	fs.IntVar(&o.maxWorkloads, "max-workloads", agent.DefaultMaxWorkloads, "workloads observed at once")
	fs.IntVar(&o.maxWatches, "max-watches", agent.DefaultMaxWatches, "cgroup directories watched with inotify (beyond: found by rescans)")
	fs.IntVar(&o.ringBytes, "ring-bytes", audit.DefaultRingBytes, "collector ring buffer size (power of two)")
	fs.IntVar(&o.capFiles, "max-files", receipt.DefaultCaps.Files, "distinct file entries per receipt (more are counted as omitted)")
	fs.IntVar(&o.capProcs, "max-processes", receipt.DefaultCaps.Processes, "processes per receipt")
	fs.IntVar(&o.capNet, "max-network", receipt.DefaultCaps.Network, "network entries per receipt")
	fs.Int64Var(&o.fileMax, "output-file-max-bytes", agent.DefaultFileMaxBytes, "size at which a file sink rotates to PATH.1")
	common := daemon.Register(fs, "glasshouse-agent")
	log, code := common.Parse(fs, args, stdout, stderr)
	if log == nil {
		return code
	}
	sel, pol, err := loadReloadable(o)
	if err != nil {
		fmt.Fprintf(stderr, "glasshouse-agent: %v\n", err)
		return 2
	}
	if err := serve(log, o, sel, pol, stdout); err != nil {
		log.Error("glasshouse-agent failed", "err", err)
		return 1
	}
	return 0
}

// loadReloadable reads the selection and the policy from flags and the
// config file; it runs at start and on SIGHUP.
func loadReloadable(o options) (*agent.Selection, *policy.Policy, error) {
	selects, ref := []string(o.selects), o.policyRef
	if o.configFile != "" {
		fc, err := agent.ReadFileConfig(o.configFile)
		if err != nil {
			return nil, nil, err
		}
		if len(fc.Select) > 0 {
			selects = fc.Select
		}
		if fc.Policy != "" {
			ref = fc.Policy
		}
	}
	if len(selects) == 0 {
		return nil, nil, errors.New("nothing selected: give --select (all, /GLOB, pod:UID, container:ID, pod:*, container:*) or select in --config")
	}
	sel, err := agent.ParseSelection(selects)
	if err != nil {
		return nil, nil, err
	}
	var pol *policy.Policy
	if strings.TrimSpace(ref) != "" {
		if pol, err = policy.Load(ref); err != nil {
			return nil, nil, fmt.Errorf("load policy: %w", err)
		}
	}
	return sel, pol, nil
}

func serve(log *slog.Logger, o options, sel *agent.Selection, pol *policy.Policy, stdout io.Writer) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	root := o.cgroupRoot
	if root == "" {
		layout, err := cgroup.Detect()
		if err != nil {
			return fmt.Errorf("find the cgroup2 mount: %w", err)
		}
		root = layout.Unified
	}

	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			err = errors.Join(err, closers[i]())
		}
	}()
	var sinks []agent.Sink
	outputs := o.outputs
	if len(outputs) == 0 {
		outputs = list{"stdout"}
	}
	for _, out := range outputs {
		switch kind, arg, _ := strings.Cut(out, ":"); kind {
		case "stdout":
			sinks = append(sinks, agent.NewNDJSONSink("stdout", stdout))
		case "file":
			fsink, err := agent.OpenFileSink(arg, o.fileMax)
			if err != nil {
				return err
			}
			closers = append(closers, fsink.Close)
			sinks = append(sinks, fsink)
		case "store":
			st, err := sqlite.Open(ctx, sqlite.Config{Dir: arg, Synchronous: o.storeSync, Logger: log})
			if err != nil {
				return fmt.Errorf("open store: %w", err)
			}
			closers = append(closers, st.Close)
			ssink, err := agent.NewStoreSink(st, o.storeTenant)
			if err != nil {
				return err
			}
			sinks = append(sinks, ssink)
		default:
			return fmt.Errorf("--output %q: want stdout, file:PATH or store:DIR", out)
		}
	}

	// The socket hooks go on the same cgroup2 root the agent watches: in a
	// container that is the host's tree mounted in, not the container's
	// own cgroup namespace root.
	col, err := audit.Open(audit.Config{Logger: log, RingBytes: o.ringBytes, CgroupRoot: root})
	if err != nil {
		return fmt.Errorf("load the eBPF collector: %w", err)
	}
	closers = append(closers, col.Close)
	stats := func() agent.CollectorStats {
		s := col.Stats()
		return agent.CollectorStats{Events: s.Events, Dropped: s.Dropped, DecodeErrors: s.DecodeErrors, RecursionMisses: s.RecursionMisses,
			SyscallExitTime: s.ExitRunTime, SyscallExitRuns: s.ExitRuns}
	}

	a, err := agent.New(agent.Config{
		Controller:     col,
		Stats:          stats,
		CgroupRoot:     root,
		Selection:      sel,
		Policy:         pol,
		Sinks:          sinks,
		RollInterval:   o.roll,
		PolicyInterval: o.policyEvery,
		RescanInterval: o.rescan,
		MaxWorkloads:   o.maxWorkloads,
		MaxWatches:     o.maxWatches,
		Caps:           receipt.Caps{Files: o.capFiles, Processes: o.capProcs, Network: o.capNet},
		Logger:         log,
	})
	if err != nil {
		return err
	}

	if o.listen != "" {
		ln, err := net.Listen("tcp", o.listen)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("serve http", "err", err)
			}
		}()
		closers = append(closers, func() error {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		})
		log.Info("http listening", "addr", ln.Addr().String())
	}

	reload := func(why string) {
		sel, pol, err := loadReloadable(o)
		if err != nil {
			a.ReloadFailed()
			log.Error("reload failed: keeping the current selection and policy", "trigger", why, "err", err)
			return
		}
		if err := a.Reload(sel, pol); err != nil {
			a.ReloadFailed()
			log.Error("reload failed", "trigger", why, "err", err)
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload("SIGHUP")
			}
		}
	}()
	if o.configPoll > 0 {
		go agent.WatchFiles(ctx, o.configPoll, func() []string {
			paths := agent.PolicyFiles(o.policyRef)
			if o.configFile != "" {
				paths = append(paths, o.configFile)
				if fc, err := agent.ReadFileConfig(o.configFile); err == nil {
					paths = append(paths, agent.PolicyFiles(fc.Policy)...)
				}
			}
			return paths
		}, func() { reload("file change") })
	}

	log.Info("collector loaded", "load_ms", col.LoadTime().Milliseconds(), "socket_hooks", col.SocketHooks(), "cgroup_root", root)
	return a.Run(ctx)
}
