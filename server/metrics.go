package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"glasshouse.dev/glasshouse/core/receipt"
)

// metrics are the server's Prometheus metrics, in a registry of its own so
// that several servers (tests) can live in one process.
type metrics struct {
	reg         *prometheus.Registry
	runs        *prometheus.CounterVec
	runSeconds  *prometheus.HistogramVec
	reqSeconds  *prometheus.HistogramVec
	requests    *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	runDropped  prometheus.Counter
	storeErrors *prometheus.CounterVec
	recovered   prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glasshouse_runs_total", Help: "Finished runs by backend and outcome (the receipt's failure class).",
		}, []string{"backend", "outcome"}),
		runSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "glasshouse_run_duration_seconds", Help: "Wall time of runs from prepare to receipt, by backend.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"backend"}),
		reqSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "glasshouse_http_request_duration_seconds", Help: "HTTP request latency by route, queueing included.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"route"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glasshouse_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glasshouse_rejected_requests_total", Help: "Requests refused before running, by reason.",
		}, []string{"reason"}),
		runDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glasshouse_run_profiling_dropped_events_total", Help: "Profiling events lost, summed over receipts.",
		}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glasshouse_store_errors_total", Help: "Store operations that failed, by operation.",
		}, []string{"op"}),
		recovered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glasshouse_recovered_runs_total", Help: "In-flight runs found after a restart and recorded as infrastructure failures.",
		}),
	}
	reg.MustRegister(m.runs, m.runSeconds, m.reqSeconds, m.requests, m.rejected, m.runDropped, m.storeErrors, m.recovered,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "glasshouse_queue_depth", Help: "Requests waiting for a run slot.",
		}, func() float64 { return float64(s.adm.queued()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "glasshouse_runs_in_flight", Help: "Runs holding a slot.",
		}, func() float64 { return float64(s.adm.inFlight()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "glasshouse_run_slots", Help: "Maximum concurrent runs.",
		}, func() float64 { return float64(s.adm.capacity()) }),
	)
	if f := s.cfg.ProfilerDropped; f != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "glasshouse_profiler_dropped_events_total", Help: "Events the shared host profiler lost in its kernel buffers.",
		}, func() float64 { return float64(f()) }))
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

func (m *metrics) observeRun(r *receipt.Receipt) {
	m.runs.WithLabelValues(r.Backend.Name, r.Outcome.Failure).Inc()
	m.runSeconds.WithLabelValues(r.Backend.Name).Observe(r.FinishedAt.Sub(r.StartedAt.Time).Seconds())
	if r.Profiling.Dropped > 0 {
		m.runDropped.Add(float64(r.Profiling.Dropped))
	}
}
