// Expands Brecha's dashboard queries with Grafana's own code, the way the DuckDB datasource plugin asks for it.
//
//   node grafana/harness/expand.js   (reads one JSON request per line on stdin, answers one JSON line each)
//
// Request:  {"dashboard": <dashboard JSON>, "values": {var: value}, "options": {var: [values]},
//            "from": "<ISO time>", "to": "<ISO time>"}
// Answer:   {"variables": {name: sql}, "custom": {name: [{"label", "value"}]},
//            "panels": [{"title", "shownTitle", "refId", "v041", "v043"}]}  or  {"error": "..."}
//
// What runs is Grafana's code, not a copy of it:
// - a custom variable's options are what Grafana shows: scenes' CustomVariable.getValueOptions parses them from the
//   variable's `query` string (split on every comma not escaped as `\,`, then on ` : `), never from the `options`
//   array saved in the JSON; the chosen value's text is looked up in them, and "custom" answers them;
// - the dashboard's variables become @grafana/scenes QueryVariable / CustomVariable objects in an EmbeddedScene, and
//   `templateSrv.replace(text, scopedVars, format)` is scenes' `sceneGraph.interpolate(scene, text, scopedVars,
//   format)`, which is what Grafana's TemplateSrv calls inside a (scenes) dashboard;
// - the plugin's datasource class is @grafana/plugin-ui 0.9.4's SqlDatasource (the version the plugin's
//   package-lock bundles in v0.4.1 and v0.4.5), whose `interpolateVariable` expands variable queries
//   (plugin src/datasource.ts `metricFindQuery`: templateSrv.replace(query, searchFilterScopedVar,
//   this.interpolateVariable)) and whose `applyTemplateVariables` (with `clean()`: every '' becomes ') is what
//   plugin 0.4.1 used for panel SQL;
// - plugin >= 0.4.3 overrides applyTemplateVariables to return its query model's interpolate() unchanged; that
//   model (below, DuckDBQueryModel) is the plugin's three lines: templateSrv.replace(rawSql, scopedVars, 'sqlstring').
// Macros ($__timeFilter, ...) are left in place: the plugin's Go backend expands them (see tests/grafana_expand.py).
'use strict';

// stdout carries only answers: libraries' console output (i18next's banner, plugin-ui's logs) goes to stderr
console.log = console.info = console.warn = console.debug = (...args) => process.stderr.write(args.join(' ') + '\n');

const { JSDOM } = require('jsdom');

const dom = new JSDOM('<!doctype html><html><body></body></html>', { url: 'http://localhost/' });
globalThis.window = dom.window;
for (const key of Object.getOwnPropertyNames(dom.window)) {
  if (!(key in globalThis)) {
    try { globalThis[key] = dom.window[key]; } catch (e) { /* a read-only global of node's: keep node's */ }
  }
}
for (const key of ['Event', 'CustomEvent', 'EventTarget']) globalThis[key] = dom.window[key]; // jsdom's, not node's
globalThis.devicePixelRatio = 1;
// browser APIs jsdom lacks, used at import time by scenes' lazy loader / layout code (nothing is rendered here)
globalThis.IntersectionObserver = class { observe() {} unobserve() {} disconnect() {} };
globalThis.ResizeObserver = globalThis.ResizeObserver || class { observe() {} unobserve() {} disconnect() {} };
// jsdom has no matchMedia; uPlot (loaded by @grafana/ui) subscribes to one at import time
const mediaQueryList = { matches: false, addListener() {}, removeListener() {}, addEventListener() {}, removeEventListener() {} };
globalThis.matchMedia = dom.window.matchMedia = () => mediaQueryList;
require.extensions['.css'] = () => undefined; // some packages import stylesheets
// @grafana/scenes' CommonJS build requires '@grafana/schema/dist/esm/.../X_types.gen' without the '.js' a bundler adds
const Module = require('module');
const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  try {
    return resolveFilename.call(this, request, ...rest);
  } catch (err) {
    if (err.code === 'MODULE_NOT_FOUND' && request.startsWith('@grafana/schema/dist/')) {
      return resolveFilename.call(this, request + '.js', ...rest);
    }
    throw err;
  }
};

const readline = require('readline');
const { EmbeddedScene, SceneFlexLayout, SceneTimeRange, SceneVariableSet, QueryVariable, CustomVariable, sceneGraph } =
  require('@grafana/scenes');
const { SqlDatasource, getSearchFilterScopedVar } = require('@grafana/plugin-ui/dist/datasource/SqlDatasource');

// plugin src/datasource.ts (v0.4.3 .. v0.4.5), class DuckDBQueryModel
class DuckDBQueryModel {
  constructor(target, templateSrv, scopedVars) {
    this.target = target || { refId: 'A' };
    this.templateSrv = templateSrv;
    this.scopedVars = scopedVars;
  }
  interpolate() {
    return (this.templateSrv && this.templateSrv.replace(this.target.rawSql, this.scopedVars, 'sqlstring')) || '';
  }
  quoteLiteral(value) {
    return "'" + value.replace(/'/g, "''") + "'";
  }
}

class DuckDBDataSource extends SqlDatasource {
  getQueryModel(target, templateSrv, scopedVars) {
    return new DuckDBQueryModel(target, templateSrv, scopedVars);
  }
  getDB() { return {}; }
  getResponseParser() { return {}; }
}

const SETTINGS = { id: 1, uid: 'brecha-duckdb', name: 'Brecha (DuckDB)', type: 'motherduck-duckdb-datasource',
  meta: { id: 'motherduck-duckdb-datasource', info: {} }, jsonData: {}, access: 'proxy', readOnly: true };

function sceneVariable(v, values, options) {
  const common = { name: v.name, label: v.label, isMulti: Boolean(v.multi), includeAll: Boolean(v.includeAll),
    allValue: v.allValue || undefined };
  let value = v.name in values ? values[v.name] : (v.current && v.current.value);
  if (value === '$__all' || value === 'All') value = '$__all';
  if (v.type === 'custom') return new CustomVariable({ ...common, query: v.query, value, text: value, options: [] });
  const opts = (options[v.name] || []).map((x) => ({ label: String(x), value: String(x) }));
  const text = value === '$__all' ? 'All' : (opts.find((o) => o.value === value) || { label: value }).label;
  if (v.type === 'query') {
    return new QueryVariable({ ...common, query: v.query, datasource: v.datasource, value, text, options: opts });
  }
  throw new Error(`variable ${v.name}: type ${v.type} is not handled by this harness`);
}

function expand(req) {
  const dash = req.dashboard;
  const variables = dash.templating.list.map((v) => sceneVariable(v, req.values || {}, req.options || {}));
  const scene = new EmbeddedScene({
    $timeRange: new SceneTimeRange({ from: req.from, to: req.to, timeZone: dash.timezone || 'utc' }),
    $variables: new SceneVariableSet({ variables }),
    body: new SceneFlexLayout({ children: [] }),
  });
  const templateSrv = {
    replace: (text, scopedVars, format) => sceneGraph.interpolate(scene, text, scopedVars, format),
    containsTemplate: () => true, getVariables: () => [], updateTimeRange: () => undefined,
  };
  const out = { variables: {}, custom: {}, panels: [] };
  for (const variable of variables) {
    if (!(variable instanceof CustomVariable)) continue;
    // what Grafana lists in the dropdown: parsed from the query (rxjs.of: the subscription runs synchronously)
    let parsed = [];
    variable.getValueOptions({}).subscribe((o) => { parsed = o; });
    const { value } = variable.state;
    const chosen = parsed.find((o) => o.value === value) || { label: value };
    variable.setState({ options: parsed, text: chosen.label });
    out.custom[variable.state.name] = parsed.map((o) => ({ label: o.label, value: o.value }));
  }
  const ds = new DuckDBDataSource(SETTINGS, templateSrv);
  for (const v of dash.templating.list) {
    if (v.type !== 'query') continue;
    const query = typeof v.query === 'string' ? v.query : v.query.rawSql || v.query.query;
    // plugin src/datasource.ts metricFindQuery
    out.variables[v.name] = templateSrv.replace(query, getSearchFilterScopedVar({ query, wildcardChar: '%', options: {} }),
      ds.interpolateVariable);
  }
  const scopedVars = { __interval: { text: '1h', value: '1h' }, __interval_ms: { text: '3600000', value: 3600000 } };
  const panels = [];
  for (const p of dash.panels) panels.push(p, ...(p.panels || []));
  for (const p of panels) {
    for (const t of p.targets || []) {
      const v043 = ds.getQueryModel(t, templateSrv, scopedVars).interpolate(); // plugin >= 0.4.3 applyTemplateVariables
      const v041 = SqlDatasource.prototype.applyTemplateVariables.call(ds, t, scopedVars).rawSql; // plugin-ui's, clean()
      out.panels.push({ title: p.title, shownTitle: templateSrv.replace(p.title, scopedVars), refId: t.refId, v041, v043 });
    }
  }
  return out;
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on('line', (line) => {
  if (!line.trim()) return;
  let answer;
  try {
    answer = expand(JSON.parse(line));
  } catch (err) {
    answer = { error: String((err && err.stack) || err) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
});
