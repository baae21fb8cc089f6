// Kizuna's page: charts from data-chart attributes (Chart.js, served by Kizuna itself) and
// filter forms that send only the fields a marketer filled in.
"use strict";

const PALETTE = ["#2f6f8f", "#d9822b", "#3a9d5d", "#b8455a", "#7a5ea8", "#8a8a8a"];

function drawCharts() {
  if (typeof Chart === "undefined") return;
  for (const canvas of document.querySelectorAll("canvas[data-chart]")) {
    const spec = JSON.parse(canvas.dataset.chart);
    const percent = Boolean(spec.percent);
    const datasets = spec.series.map((s, i) => ({
      label: s.label,
      data: s.data,
      borderColor: PALETTE[i % PALETTE.length],
      backgroundColor: PALETTE[i % PALETTE.length] + (spec.type === "bar" ? "cc" : "33"),
      tension: 0.2,
      spanGaps: true,
      yAxisID: s.axis || "y",
    }));
    const scales = {
      y: {
        beginAtZero: spec.type === "bar" || percent,
        ticks: percent ? { callback: (v) => Math.round(v * 100) + "%" } : {},
      },
    };
    if (spec.series.some((s) => s.axis === "y2")) {
      scales.y2 = { position: "right", grid: { drawOnChartArea: false } };
    }
    if (spec.xlabel) scales.x = { title: { display: true, text: spec.xlabel } };
    new Chart(canvas, {
      type: spec.type,
      data: { labels: spec.labels, datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales,
        plugins: {
          legend: { display: spec.series.length > 1 },
          tooltip: percent
            ? { callbacks: { label: (c) => `${c.dataset.label}: ${(c.parsed.y * 100).toFixed(1)}%` } }
            : {},
        },
      },
    });
  }
}

function sendOnlyFilledFields() {
  for (const form of document.querySelectorAll("form[method=get]")) {
    form.addEventListener("submit", () => {
      for (const field of form.elements) {
        if (field.name && (field.value === "" || field.value == null)) field.disabled = true;
      }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  drawCharts();
  sendOnlyFilledFields();
});
