"""The page's look: a dark theme close to Grafana's, inlined so no asset files need packaging."""

from __future__ import annotations

CSS = """
:root {
  --bg: #111217; --panel: #181B1F; --border: #2A2D33; --text: #CCCCDC; --muted: #8E8E9E;
  --accent: #6E9FFF;
  --Dash-Fill-Inverse-Strong: #22252B;
  --Dash-Fill-Interactive-Strong: #6E9FFF;
  --Dash-Fill-Interactive-Weak: rgba(110, 159, 255, 0.08);
  --Dash-Fill-Primary-Hover: rgba(204, 204, 220, 0.08);
  --Dash-Fill-Primary-Active: rgba(204, 204, 220, 0.14);
  --Dash-Fill-Disabled: rgba(204, 204, 220, 0.06);
  --Dash-Stroke-Strong: #3A3D44; --Dash-Stroke-Weak: #2A2D33;
  --Dash-Text-Strong: #E6E6F0; --Dash-Text-Primary: #CCCCDC; --Dash-Text-Weak: #8E8E9E;
  --Dash-Text-Disabled: #6E6E7E;
  --Dash-Shading-Strong: rgba(0, 0, 0, 0.55); --Dash-Shading-Weak: rgba(0, 0, 0, 0.35);
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
  font-family: Inter, "Helvetica Neue", Arial, sans-serif; font-size: 14px; }
.page { padding: 14px 18px 28px; max-width: 1800px; margin: 0 auto; }
.topbar { display: flex; align-items: center; gap: 16px; margin-bottom: 12px; }
.topbar h1 { font-size: 20px; font-weight: 600; margin: 0; color: #E6E6F0; }
.topbar .source { color: var(--muted); font-size: 12px; }
.topbar .spacer { flex: 1; }
.topbar .updated { color: var(--muted); font-size: 12px; }
.refresh-button { background: #22252B; color: var(--text); border: 1px solid var(--border);
  border-radius: 4px; padding: 6px 12px; cursor: pointer; font-size: 13px; }
.refresh-button:hover { border-color: var(--accent); }
.filters { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-end; margin-bottom: 10px; }
.filter { display: flex; flex-direction: column; gap: 4px; min-width: 170px; flex: 1 1 170px; max-width: 320px; }
.filter label { font-size: 12px; color: var(--muted); font-weight: 500; }
.tiers { display: flex; gap: 14px; align-items: center; margin: 0 0 12px; font-size: 12px; color: var(--muted); }
.tier-chip { display: inline-flex; align-items: center; gap: 6px; }
.tier-dot { width: 10px; height: 10px; border-radius: 50%; display: inline-block; }
.banner { border-radius: 4px; padding: 10px 14px; margin-bottom: 12px; font-size: 14px; }
.banner:empty { display: none; }
.banner-error { background: rgba(242, 73, 92, 0.12); border: 1px solid rgba(242, 73, 92, 0.5); color: #FF9AA5; }
.banner-info { background: rgba(110, 159, 255, 0.10); border: 1px solid rgba(110, 159, 255, 0.45); color: #B8CFFF; }
.grid { display: grid; grid-template-columns: repeat(24, minmax(0, 1fr)); grid-auto-rows: 30px; gap: 8px; }
.panel { background: var(--panel); border: 1px solid var(--border); border-radius: 4px;
  display: flex; flex-direction: column; min-width: 0; min-height: 0; overflow: hidden; }
.panel-title { font-size: 14px; font-weight: 500; padding: 8px 10px 2px; color: #E6E6F0;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; cursor: help; }
.panel-content { flex: 1; min-height: 0; display: flex; }
.panel-slot { flex: 1; min-height: 0; min-width: 0; display: flex; }
.panel-body { flex: 1; min-height: 0; min-width: 0; display: flex; flex-direction: column; padding: 4px 8px 8px; }
.panel-graph { flex: 1; min-height: 0; }
.panel-graph .js-plotly-plot, .panel-graph .plot-container { height: 100%; }
.panel-message { margin: auto; color: var(--muted); font-size: 14px; text-align: center; padding: 8px; }
.panel-error { color: #FF9AA5; }
.stat { flex: 1; display: flex; align-items: center; justify-content: center; gap: 28px; flex-wrap: wrap; }
.stat-item { text-align: center; }
.stat-value { font-size: 40px; font-weight: 600; line-height: 1.1; letter-spacing: -0.5px; }
.stat-label { font-size: 12px; color: var(--muted); margin-top: 2px; }
.gauge { flex: 1; overflow-y: auto; display: flex; flex-direction: column; gap: 7px; padding: 4px 2px; }
.gauge-row { display: grid; grid-template-columns: minmax(70px, 34%) 1fr auto; align-items: center; gap: 10px; }
.gauge-label { font-size: 12px; color: var(--text); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.gauge-track { height: 14px; background: rgba(204, 204, 220, 0.07); border-radius: 2px; overflow: hidden; }
.gauge-fill { height: 100%; border-radius: 2px; opacity: 0.9; }
.gauge-value { font-size: 13px; font-weight: 600; min-width: 64px; text-align: right; font-variant-numeric: tabular-nums; }
.dash-table-container { flex: 1; min-height: 0; }
.dash-spreadsheet-container .dash-spreadsheet-inner td, .dash-spreadsheet-container .dash-spreadsheet-inner th {
  font-variant-numeric: tabular-nums; }
.dash-spreadsheet-container .dash-spreadsheet-inner th.dash-header > div {
  display: flex; align-items: center; gap: 6px; }
.dash-spreadsheet-container .dash-spreadsheet-inner th.dash-header[data-dash-column^="Value"] > div {
  justify-content: flex-end; }
.dash-spreadsheet-container .dash-spreadsheet-inner .column-header--sort { opacity: 0.4; }
.range-input { background: #22252B; color: var(--text); border: 1px solid var(--border);
  border-radius: 4px; padding: 7px 8px; font-size: 13px; }
.range-error { color: #FF9AA5; font-size: 12px; align-self: center; }
.range-error:empty { display: none; }
.previous-next-container { color: var(--muted); font-size: 12px; padding: 4px 0; }
.previous-next-container button, .previous-next-container input { background: #22252B;
  color: var(--text); border: 1px solid var(--border); border-radius: 3px; }
._dash-loading { color: var(--muted); padding: 20px; }
"""
