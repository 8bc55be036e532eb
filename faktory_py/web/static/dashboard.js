// The dashboard's two charts (uPlot): processed/failed per poll of /stats, and daily history.
(function () {
  var width = function (el) { return Math.max(300, el.clientWidth - 2); };
  var series = [{}, { label: "Processed", stroke: "#2a7d2a", width: 2 }, { label: "Failed", stroke: "#b22", width: 2 }];

  var history = JSON.parse(document.getElementById("history-data").textContent);
  var historyEl = document.getElementById("history-chart");
  new uPlot({ width: width(historyEl), height: 220, series: series, scales: { x: { time: true } } }, [
    history.map(function (d) { return Date.parse(d[0] + "T00:00:00Z") / 1000; }),
    history.map(function (d) { return d[1]; }),
    history.map(function (d) { return d[2]; }),
  ], historyEl);

  var liveEl = document.getElementById("realtime-chart");
  var points = [[], [], []];
  var live = new uPlot({ width: width(liveEl), height: 220, series: series, scales: { x: { time: true } } }, points, liveEl);
  var last = null;
  var slider = document.getElementById("interval");
  var shown = document.getElementById("interval-value");
  var timer = null;

  function poll() {
    fetch(liveEl.dataset.stats, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (info) {
        var f = info.faktory;
        ["processed", "failed", "busy", "enqueued", "retries", "scheduled", "dead"].forEach(function (id) {
          var value = { processed: f.total_processed, failed: f.total_failures, busy: f.sets.working,
                        enqueued: f.total_enqueued, retries: f.sets.retries, scheduled: f.sets.scheduled,
                        dead: f.sets.dead }[id];
          document.getElementById(id).textContent = value;
        });
        document.getElementById("server-time").textContent = info.server_utc_time;
        if (last !== null) {
          points[0].push(Date.now() / 1000);
          points[1].push(Math.max(0, f.total_processed - last.total_processed));
          points[2].push(Math.max(0, f.total_failures - last.total_failures));
          if (points[0].length > 60) points.forEach(function (p) { p.shift(); });
          live.setData(points);
        }
        last = f;
        document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
      })
      .catch(function () { /* the server may be restarting: try again next tick */ });
  }

  function schedule() {
    shown.textContent = slider.value;
    if (timer) clearInterval(timer);
    timer = setInterval(poll, Number(slider.value) * 1000);
  }
  slider.addEventListener("input", schedule);
  poll();
  schedule();
})();
