// Time-series charts drawn by uPlot (vendor/, MIT), one per metric and range. Every chart made
// here is kept in window.conveyor.charts by id, so tests (and curious operators) can read the
// data a chart holds: window.conveyor.charts["hour-throughput"].data.
window.conveyor = window.conveyor || { charts: {} };

const SERIES = {
  throughput: [
    { label: "done/s", key: "done_per_s", stroke: "#2563eb", fill: "rgba(37,99,235,.08)" },
    { label: "dead/s", key: "dead_per_s", stroke: "#dc2626" },
  ],
  backlog: [
    { label: "waiting + delayed", key: "backlog", stroke: "#d97706", fill: "rgba(217,119,6,.08)" },
    { label: "in flight", key: "in_flight", stroke: "#059669" },
  ],
  latency: [
    { label: "p50 (s)", key: "start_p50_s", stroke: "#0891b2" },
    { label: "p95 (s)", key: "start_p95_s", stroke: "#7c3aed" },
    { label: "p99 (s)", key: "start_p99_s", stroke: "#be185d" },
  ],
  waiting: [{ label: "oldest waiting (s)", key: "latency_s", stroke: "#7c3aed" }],
};

function columns(kind, chart) {
  return [chart.t, ...SERIES[kind].map((s) => chart[s.key])];
}

export function drawChart(element, id, kind, chart) {
  const existing = window.conveyor.charts[id];
  if (existing && existing.root.isConnected) {
    existing.setData(columns(kind, chart));
    return existing;
  }
  const width = Math.max(320, element.clientWidth - 16);
  const options = {
    width,
    height: 180,
    series: [{}, ...SERIES[kind].map((s) => ({
      label: s.label, stroke: s.stroke, fill: s.fill, width: 2, spanGaps: false,
      points: { show: true, size: 5, fill: s.stroke }, // a lone sample between gaps still shows
    }))],
    axes: [{}, { size: 56 }],
    scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
  };
  const plot = new uPlot(options, columns(kind, chart), element);
  window.conveyor.charts[id] = plot;
  return plot;
}
