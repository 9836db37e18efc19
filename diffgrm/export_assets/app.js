/* diffgrm's static explorer (written by `diffgrm export`): no server, no network.
 *
 * The data files are scripts that call DIFFGRM.register(kind, key, payload): data/manifest.js (loaded by
 * index.html), data/codebook.js (the item cloud of every digit, loaded when the map is first shown) and
 * data/sJ/uI.js (user I under setting J, loaded when that user is shown). A file:// page may not fetch
 * files, but it may load scripts. Every figure was built in Python by diffgrm.viz; this file only puts
 * them into a fixed set of plots with Plotly.react, so a user switch or a step change updates the same
 * plots in place.
 */
"use strict";

window.DIFFGRM = (function () {
  const store = { manifest: null, codebook: null, users: new Map() };
  const pending = new Map();  // script src -> promise of its payload
  const drawn = {};           // plot id -> key of what it shows
  const state = { index: 0, setting: 0, step: 0, tab: "denoising", digit: 0, timer: null, token: 0 };
  const timings = { firstShown: null, switches: [] };
  const PLAY_MS = 800;        // how long Play shows each step (as the app)
  const CONFIG = { displaylogo: false, responsive: true };
  const $ = (id) => document.getElementById(id);

  function register(kind, key, payload) {
    if (kind === "manifest") store.manifest = payload;
    else if (kind === "codebook") store.codebook = payload.map((fig) => ({ data: shared(fig.data), layout: fig.layout }));
    else if (kind === "user") store.users.set(key, payload);
  }

  function loadScript(src, get) {
    const have = get();
    if (have) return Promise.resolve(have);
    if (pending.has(src)) return pending.get(src);
    const promise = new Promise((resolve, reject) => {
      const tag = document.createElement("script");
      tag.src = src;
      tag.charset = "utf-8";
      const done = (error) => {
        tag.remove();
        pending.delete(src);
        const value = get();
        if (value) resolve(value);
        else reject(new Error(error || `${src} holds no data`));
      };
      tag.onload = () => done(null);
      tag.onerror = () => done(`cannot load ${src}: is the export complete?`);
      document.head.appendChild(tag);
    });
    pending.set(src, promise);
    return promise;
  }

  const M = () => store.manifest;
  const settingKey = () => M().settings[state.setting].key;
  const userKey = (index) => `${settingKey()}/u${index}`;
  const loadUser = (index) => loadScript(`data/${userKey(index)}.js`, () => store.users.get(userKey(index)));
  const loadCodebook = () => loadScript("data/codebook.js", () => store.codebook);
  const current = () => store.users.get(userKey(state.index));

  // ------------------------------------------------------------------ figures
  function layoutOf(base, diff) {
    const layout = JSON.parse(JSON.stringify(base));
    for (const [k, v] of Object.entries(diff || {})) {
      if (v === null) delete layout[k];
      else layout[k] = JSON.parse(JSON.stringify(v));
    }
    layout.template = M().template;
    return layout;
  }

  function react(id, key, data, layout) {
    const div = $(id);
    if (drawn[id] === key) return Promise.resolve();
    drawn[id] = key;
    div.hidden = false;
    return Plotly.react(div, data, layout, CONFIG);
  }

  function shared(data) {  // a value written once for several traces ({"$same": i}) filled in, in place
    for (const trace of data) {
      for (const [key, value] of Object.entries(trace)) {
        if (value && typeof value === "object" && value.$same !== undefined) trace[key] = data[value.$same][key];
      }
    }
    return data;
  }
  const copy = (data) => shared(JSON.parse(JSON.stringify(data)));  // fresh trace objects for Plotly.react
  const drawFigure = (id, key, fig) => react(id, key, copy(fig.data), layoutOf(fig.layout, null));
  const drawFrame = (id, key, frames, i) => react(id, key, copy(frames.frames[i].data),
    layoutOf(frames.layout, frames.frames[i].layout));

  function blank(id) {  // a view with no figure for this user: hidden, the plot kept for the next one
    drawn[id] = null;
    $(id).hidden = true;
  }

  // ------------------------------------------------------------------ tables and text
  function tableOf(columns, rows, options) {
    const t = document.createElement("table");
    const head = t.createTHead().insertRow();
    for (const c of columns) {
      const th = document.createElement("th");
      th.textContent = c.label;
      head.appendChild(th);
    }
    const body = t.createTBody();
    rows.forEach((row) => {
      const tr = body.insertRow();
      if (options && options.hit && options.hit(row)) tr.className = "hit";
      for (const c of columns) {
        const td = tr.insertCell();
        td.textContent = c.format ? c.format(row[c.at]) : String(row[c.at]);
        if (c.cls) td.className = c.cls;
      }
    });
    return t;
  }

  function fill(id, node) {
    const box = $(id);
    box.replaceChildren(node);
  }

  function describeUser(u) {
    const M_ = M(), s = u.setting, k = s.k;
    $("user-title").textContent = `User ${u.user}: what comes next?`;
    const h = u.history;
    $("history-title").textContent = `History (${h.rows.length} items, most recent first)`;
    const col = (name) => h.columns.indexOf(name);
    fill("history", tableOf([{ label: "#", at: col("position"), cls: "num" }, { label: "title", at: col("title") },
      { label: "SID", at: col("sid"), cls: "sid" }], h.rows));
    const t = u.topk, tc = (name) => t.columns.indexOf(name);
    const columns = [{ label: "rank", at: tc("rank"), cls: "num" }, { label: "title", at: tc("title") },
      { label: "SID", at: tc("sid"), cls: "sid" },
      { label: "SID probability", at: tc("probability"), cls: "num", format: (v) => Number(v).toPrecision(3) },
      { label: "held-out item", at: tc("hit"), format: (v) => (v ? "✓" : "") }];
    if (!s.exclude_seen) columns.push({ label: "in the history", at: tc("in_history"), format: (v) => (v ? "✓" : "") });
    $("topk-title").textContent = `Top-${k}`;
    fill("topk", tableOf(columns, t.rows, { hit: (row) => row[tc("hit")] }));
    const held = u.heldout;
    $("heldout").textContent = `Held-out next item: ${held.title} (SID ${held.sid}): ` +
      (held.rank ? `hit, rank ${held.rank} of the Top-${k}` : `not in the Top-${k}`);
    const seen = t.rows.filter((row) => row[tc("in_history")]).length;
    $("topk-note").textContent = "SID probability: the product of the filled digits' probabilities, each given " +
      `the digits filled before it; tiny because it is spread over all ${M_.run.items} items: read the ranks. ` +
      (s.exclude_seen ? "The user's history is kept out of this list." :
        `History items are allowed: ${seen} of these ${t.rows.length} are in the history.`);
    $("why-text").textContent = u.why.message;
    const o = u.orders;
    $("orders-note").textContent = o.note || "";
    $("orders-found").textContent = o.found || "";
    if (o.table) {
      fill("orders-table", tableOf(o.table.columns.map((c, i) => ({ label: c, at: i, cls: i ? "" : "num" })),
        o.table.rows));
    } else $("orders-table").replaceChildren();
  }

  function describeStep(u) {
    const d = u.denoising, n = d.steps;
    const slider = $("step");
    slider.max = String(n);
    state.step = Math.min(state.step, n);
    slider.value = String(state.step);
    $("step-label").textContent = `${state.step} of ${n}`;
    $("step-text").textContent = d.text[state.step];
  }

  // ------------------------------------------------------------------ drawing the open view
  async function drawView(u) {
    const base = `${settingKey()}/u${state.index}`;
    const d = u.denoising;
    if (state.tab === "denoising") {
      const alt = Math.max(state.step - 1, 0);  // step 0 shows the first step's candidates
      await Promise.all([
        drawFrame("fig-strip", `${base}/${state.step}`, d.strip, state.step),
        drawFrame("fig-alternatives", `${base}/${alt}`, d.alternatives, alt),
        drawFigure("fig-confidence", base, d.confidence),
      ]);
    } else if (state.tab === "why") {
      if (u.why.figure) await drawFigure("fig-why", base, u.why.figure);
      else blank("fig-why");
    } else if (state.tab === "orders") {
      if (u.orders.figure) await drawFigure("fig-orders", base, u.orders.figure);
      else blank("fig-orders");
    } else if (state.tab === "codebook") {
      const cloud = await loadCodebook();
      const digit = Math.min(state.digit, cloud.length - 1);
      if (u !== current()) return;  // another user was asked for meanwhile
      const data = cloud[digit].data.concat(copy(u.codebook[digit]));
      await react("fig-codebook", `${base}/${digit}`, data, layoutOf(cloud[digit].layout, null));
    }
  }

  function settle() {  // two animation frames: the browser has painted what was drawn
    return new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  }

  function status(text, error) {
    const el = $("status");
    el.textContent = text || "";
    el.className = error ? "error" : "";
  }

  // ------------------------------------------------------------------ actions
  async function show(index, settingIndex) {
    const t0 = performance.now();
    const token = ++state.token;
    if (settingIndex !== undefined) state.setting = settingIndex;
    state.index = index;
    const [id] = M().users[index];
    status(`Loading user ${id}…`);
    let u;
    try {
      u = await loadUser(index);
    } catch (err) {
      status(String(err.message || err), true);
      throw err;
    }
    if (token !== state.token) return;  // a later switch won
    $("user-id").value = id;
    $("by-length").value = String(index);
    $("setting").value = String(state.setting);
    describeUser(u);
    describeStep(u);
    await drawView(u);
    await settle();
    if (token !== state.token) return;
    status("");
    history.replaceState(null, "", `#user=${encodeURIComponent(id)}` +
      (state.setting ? `&setting=${settingKey()}` : ""));
    const ms = performance.now() - t0;
    if (timings.firstShown === null) timings.firstShown = performance.now();
    else timings.switches.push(ms);
    document.body.dataset.shown = `${id}|${settingKey()}|${state.tab}`;
  }

  function showId(id) {
    const index = M().users.findIndex((row) => row[0] === String(id).trim());
    if (index < 0) {
      const sample = M().users.slice(0, 3).map((row) => row[0]).join(", ");
      status(`User ${id} is not in this export (${M().users.length} users, e.g. ${sample}).`, true);
      return Promise.resolve();
    }
    return show(index);
  }

  function setStep(step) {
    const u = current();
    if (!u) return Promise.resolve();
    state.step = Math.max(0, Math.min(step, u.denoising.steps));
    describeStep(u);
    return drawView(u);
  }

  function stop() {
    if (state.timer !== null) clearInterval(state.timer);
    state.timer = null;
    $("play").textContent = "▶ Play";
  }

  function play() {
    if (state.timer !== null) return stop();
    const u = current();
    if (!u) return;
    $("play").textContent = "❚❚ Pause";
    setStep(0);  // from step 0, every digit masked, to the Top-K
    state.timer = setInterval(() => {
      const now = current();
      if (!now || state.step >= now.denoising.steps) return stop();
      setStep(state.step + 1);
    }, PLAY_MS);
  }

  function openTab(tab) {
    state.tab = tab;
    for (const b of document.querySelectorAll(".tabs button")) b.setAttribute("aria-selected", String(b.dataset.tab === tab));
    for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== `tab-${tab}`;
    const u = current();
    if (!u) return Promise.resolve();
    return drawView(u).then(() => {
      for (const div of document.querySelectorAll(`#tab-${tab} .js-plotly-plot`)) Plotly.Plots.resize(div);
      document.body.dataset.shown = `${u.user}|${settingKey()}|${state.tab}`;
    });
  }

  // ------------------------------------------------------------------ start
  function intro(m) {
    const r = m.run;
    return `Every item of the catalogue has a semantic ID (SID): ${r.n_digits} digits, each one of ${r.codebook_size} ` +
      `codes, chosen so that similar items share codes ("${r.example.title}" is ${r.example.sid}). To recommend, the ` +
      "model reads the user's history and writes the SID of the next item: it starts with every digit masked and " +
      "fills them one at a time, surest first, keeping several candidate SIDs (a beam) side by side. Where to look " +
      "first: the Denoising view below; press Play to watch the digits being filled. Then Why not? tells where the " +
      "held-out item (what the user really chose next) dropped out, and Compare orders shows what changes when the " +
      "digits are filled in a fixed order instead.";
  }

  function scoreText(name, s) {
    if (!s) return "";
    const pop = s.popularity ? ` = ${(s["ndcg@10"] / s.popularity).toFixed(1)}x popularity (${s.popularity.toFixed(4)})` : "";
    return `${name}: ${s.split} NDCG@10 ${s["ndcg@10"].toFixed(4)}${pop}` + (s.users ? ` over ${s.users} users` : "") +
      (s.exclude_seen ? ", history kept out." : ".");
  }

  function setUp() {
    const m = M();
    if (!m) {
      status("data/manifest.js is missing: this folder is not a complete diffgrm export.", true);
      return;
    }
    const r = m.run;
    const what = r.denoises ? "DiffGRM (masked diffusion: the surest digits first)" :
      "an autoregressive (AR) decoder (digits left to right)";
    $("model-note").textContent = `Run ${r.name}: ${r.label ? r.label + ", " : ""}${what}, trained on ${r.dataset}; ` +
      `${r.items} items, SIDs of ${r.n_digits} digits x ${r.codebook_size} codes.`;
    $("scores").textContent = [scoreText("This run", r.score), m.ar ? scoreText(`Its AR companion (${m.ar.name})`, m.ar.score) : ""]
      .filter(Boolean).join(" ");
    $("intro").textContent = intro(m);
    $("users-note").textContent = `${m.users.length} users of the test split are in this export.`;
    const list = $("user-ids"), byLength = $("by-length"), setting = $("setting"), digit = $("digit");
    m.users.forEach(([id, n]) => list.appendChild(new Option(`${n} items`, id)));
    byLength.appendChild(new Option("choose a user…", ""));
    m.users.map(([id, n], i) => [n, i, id]).sort((a, b) => a[0] - b[0] || a[1] - b[1])
      .forEach(([n, i, id]) => byLength.appendChild(new Option(`${n} items · user ${id}`, String(i))));
    m.settings.forEach((s, j) => setting.appendChild(new Option(s.label, String(j))));
    setting.disabled = m.settings.length < 2;
    $("setting-note").textContent = m.settings.length < 2 ? "The one setting this export was made with." :
      `${m.settings.length} settings were exported: switch between them.`;
    for (let d = 0; d < r.n_digits; d++) digit.appendChild(new Option(`digit ${d}`, String(d)));
    $("footer").textContent = `Exported by diffgrm ${m.diffgrm}: ${m.users.length} users, seed ${m.seed}. ` +
      "Every figure was computed when the export was made; this page only shows them.";

    const go = () => showId($("user-id").value).catch(() => {});
    $("show-user").addEventListener("click", go);
    $("user-id").addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
    $("user-id").addEventListener("change", () => {
      if (M().users.some((row) => row[0] === $("user-id").value.trim())) go();
    });
    $("random-user").addEventListener("click", () => {
      const n = m.users.length;
      let i = Math.floor(Math.random() * n);
      if (n > 1 && i === state.index) i = (i + 1) % n;
      show(i).catch(() => {});
    });
    byLength.addEventListener("change", () => { if (byLength.value !== "") show(Number(byLength.value)).catch(() => {}); });
    setting.addEventListener("change", () => show(state.index, Number(setting.value)).catch(() => {}));
    digit.addEventListener("change", () => {
      state.digit = Number(digit.value);
      const u = current();
      if (u) drawView(u).catch((err) => status(String(err.message || err), true));
    });
    $("step").addEventListener("input", () => { stop(); setStep(Number($("step").value)); });
    $("play").addEventListener("click", play);
    for (const b of document.querySelectorAll(".tabs button")) b.addEventListener("click", () => openTab(b.dataset.tab));

    const hash = new URLSearchParams(location.hash.slice(1));
    const wanted = m.users.findIndex((row) => row[0] === hash.get("user"));
    const s = m.settings.findIndex((x) => x.key === hash.get("setting"));
    show(Math.max(wanted, 0), Math.max(s, 0)).catch(() => {});
  }

  document.addEventListener("DOMContentLoaded", setUp);

  return {
    register, show, showId, setStep, play, openTab, timings, state,
    get manifest() { return store.manifest; },
    settled: settle,
  };
})();
