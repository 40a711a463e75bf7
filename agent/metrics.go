package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// CollectorStats are the collector's host-wide counters. They only grow.
type CollectorStats struct {
	// Events is the number of records read from the kernel.
	Events uint64
	// Dropped is the number of records the kernel could not queue.
	Dropped uint64
	// DecodeErrors counts records that could not be decoded.
	DecodeErrors uint64
	// RecursionMisses counts BPF program runs the kernel skipped.
	RecursionMisses uint64
	// SyscallExitTime and SyscallExitRuns are the syscall exit program's
	// own run time and runs, counted by the kernel only while its BPF
	// statistics are on (sysctl kernel.bpf_stats_enabled=1): the
	// collector's cost to every process on the host.
	SyscallExitTime time.Duration
	SyscallExitRuns uint64
}

// metrics are the agent's Prometheus metrics, on their own registry.
type metrics struct {
	reg *prometheus.Registry

	eventsPerSecond prometheus.Gauge
	workloads       prometheus.Gauge
	watches         prometheus.Gauge
	violations      *prometheus.CounterVec
	receipts        *prometheus.CounterVec
	sinkErrors      *prometheus.CounterVec
	omitted         *prometheus.CounterVec
	discovered      prometheus.Counter
	untracked       prometheus.Counter
	rescans         *prometheus.CounterVec
	reloads         *prometheus.CounterVec
	policyEvals     prometheus.Counter
	policyEvalSecs  prometheus.Histogram
	seeded          prometheus.Counter
}

func newMetrics(stats func() CollectorStats) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		eventsPerSecond: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "glasshouse_agent_events_per_second",
			Help: "Kernel events the collector read per second, averaged over the last few seconds.",
		}),
		workloads: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "glasshouse_agent_tracked_workloads",
			Help: "Workloads (selected cgroups) being observed.",
		}),
		watches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "glasshouse_agent_cgroup_watches",
			Help: "cgroup directories watched with inotify for workloads that appear and disappear.",
		}),
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glasshouse_agent_policy_violations_total",
			Help: "Policy violations found, each counted once per workload when first seen.",
		}, []string{"rule", "severity"}),
		receipts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glasshouse_agent_receipts_total",
			Help: "Receipts written, by kind (rolling or final).",
		}, []string{"kind"}),
		sinkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glasshouse_agent_sink_errors_total",
			Help: "Receipts a sink failed to write.",
		}, []string{"sink"}),
		omitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glasshouse_agent_omitted_entries_total",
			Help: "Receipt entries cut to keep receipts (and the agent's memory) bounded, by section.",
		}, []string{"section"}),
		discovered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glasshouse_agent_workloads_discovered_total",
			Help: "Workloads the agent started observing.",
		}),
		untracked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glasshouse_agent_workloads_refused_total",
			Help: "Selected cgroups the agent could not observe (session limit reached or collector error).",
		}),
		rescans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glasshouse_agent_rescans_total",
			Help: "Full rescans of the cgroup tree, by reason (start, periodic, overflow, reload).",
		}, []string{"reason"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glasshouse_agent_reloads_total",
			Help: "Reloads of policies and selection (SIGHUP), by result.",
		}, []string{"result"}),
		policyEvals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glasshouse_agent_policy_evaluations_total",
			Help: "Live policy evaluations over workloads' current windows.",
		}),
		policyEvalSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "glasshouse_agent_policy_evaluation_seconds",
			Help:    "Time of one live policy evaluation (snapshot, evaluate, compare).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8),
		}),
		seeded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glasshouse_agent_seeded_processes_total",
			Help: "Processes found already running in a workload and described from /proc.",
		}),
	}
	reg.MustRegister(m.eventsPerSecond, m.workloads, m.watches, m.violations, m.receipts, m.sinkErrors,
		m.omitted, m.discovered, m.untracked, m.rescans, m.reloads, m.policyEvals, m.policyEvalSecs, m.seeded)
	if stats != nil {
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "glasshouse_agent_events_total",
				Help: "Kernel events the collector read.",
			}, func() float64 { return float64(stats().Events) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "glasshouse_agent_dropped_events_total",
				Help: "Kernel events lost because the collector's ring buffer was full.",
			}, func() float64 { return float64(stats().Dropped) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "glasshouse_agent_decode_errors_total",
				Help: "Kernel records the collector could not decode.",
			}, func() float64 { return float64(stats().DecodeErrors) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "glasshouse_agent_bpf_recursion_misses_total",
				Help: "Collector program runs the kernel skipped because the program was already running on that CPU.",
			}, func() float64 { return float64(stats().RecursionMisses) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "glasshouse_agent_syscall_exit_seconds_total",
				Help: "Run time of the collector's syscall exit program, which runs at every syscall on the host; counted only while sysctl kernel.bpf_stats_enabled=1.",
			}, func() float64 { return stats().SyscallExitTime.Seconds() }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "glasshouse_agent_syscall_exit_runs_total",
				Help: "Runs of the collector's syscall exit program; counted only while sysctl kernel.bpf_stats_enabled=1.",
			}, func() float64 { return float64(stats().SyscallExitRuns) }),
		)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
