// Hive Portal: keyboard shortcuts and small conveniences for moderators.
// Progressive enhancement only: every action here is also a plain HTML form
// or link, so the portal works (more slowly) with JavaScript turned off.

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
const page = document.body.dataset.page || "";

function isTyping(el) {
  if (!el) return false;
  if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
  return el.tagName === "INPUT" && !["checkbox", "radio", "button", "submit", "reset"].includes(el.type);
}

function csrfToken() {
  const field = $("input[name=csrfmiddlewaretoken]");
  return field ? field.value : "";
}

// --- Help overlay ("?") --------------------------------------------------------

const help = $("#shortcuts");
let helpReturnFocus = null;

function openHelp() {
  helpReturnFocus = document.activeElement;
  help.classList.add("open");
  $("[data-close-help]", help).focus();
}

function closeHelp() {
  help.classList.remove("open");
  if (location.hash === "#shortcuts") history.replaceState(null, "", location.pathname + location.search);
  if (helpReturnFocus && helpReturnFocus.focus) helpReturnFocus.focus();
}

const helpOpen = () => help && (help.classList.contains("open") || location.hash === "#shortcuts");

if (help) {
  $("[data-close-help]", help).addEventListener("click", (event) => { event.preventDefault(); closeHelp(); });
  help.addEventListener("click", (event) => { if (event.target === help) closeHelp(); });
  $$(".help-link").forEach((link) => link.addEventListener("click", (event) => { event.preventDefault(); openHelp(); }));
}

// --- Keys, routed by page ---------------------------------------------------------

const handlers = {};

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (helpOpen()) {
    if (event.key === "Escape" || event.key === "?") { event.preventDefault(); closeHelp(); }
    return;
  }
  if (event.key === "?" && !isTyping(event.target)) { event.preventDefault(); openHelp(); return; }
  if (event.key === "/" && !isTyping(event.target) && $("[data-search]")) {
    event.preventDefault();
    $("[data-search]").focus();
    return;
  }
  const handler = handlers[page];
  if (handler) handler(event);
});

$$("[data-autosubmit]").forEach((el) => el.addEventListener("change", () => el.form.requestSubmit()));

// --- Queue pages ---------------------------------------------------------------------

handlers.queue = (event) => {
  if (isTyping(event.target)) return;
  const links = $$(".row-link");
  const at = links.indexOf(document.activeElement);
  const move = (to) => {
    if (!links.length) return;
    const target = links[Math.max(0, Math.min(links.length - 1, to))];
    $$(".list tr.focused").forEach((row) => row.classList.remove("focused"));
    target.closest("tr").classList.add("focused");
    target.focus();
  };
  if (event.key === "j") { event.preventDefault(); move(at + 1); }
  else if (event.key === "k") { event.preventDefault(); move(at < 0 ? 0 : at - 1); }
  else if (event.key === "n" && $("[data-start]")) { event.preventDefault(); $("[data-start]").form.requestSubmit(); }
};

// --- The review screen ------------------------------------------------------------------

function setupItem() {
  const form = $("[data-decide]");
  const hint = $("[data-mode-hint]");
  const note = $("[data-note]");
  const reasons = form ? $$("input[name=reason]", form) : [];
  const reveal = $("[data-reveal-toggle]");
  const gray = $("[data-gray-toggle]");
  // The media, and a speech item's transcript: both blur, and peek, together.
  const medias = $$("[data-media]");
  const setPeek = (on) => medias.forEach((media) => media.classList.toggle("peek", on));
  const player = $("[data-player]");
  const peak = $("[data-peak]");
  let mode = "";
  let sent = false;

  const say = (text) => { if (hint) hint.textContent = text; };
  const chosenReason = () => reasons.find((r) => r.checked);

  function setMode(next) {
    if (!form) return;
    mode = next;
    form.classList.toggle("mode-reject", mode === "reject");
    form.classList.toggle("mode-escalate", mode === "escalate");
    if (mode === "reject") {
      const chosen = chosenReason();
      say(chosen ? `Enter rejects as “${chosen.value}”. Esc cancels.`
                 : `Pick a reason: 1–${reasons.length}, then Enter. Esc cancels.`);
      (chosen || reasons[0] || form).focus();
    } else if (mode === "escalate") {
      say("Write a note for the lead, then Enter. Esc cancels.");
      note.focus();
    } else {
      say("");
    }
  }

  function submit(action) {
    if (!form || sent) return;
    const button = $(`[data-action=${action}]`, form);
    if (button) form.requestSubmit(button);
  }

  if (form) {
    form.addEventListener("submit", (event) => {
      const action = event.submitter ? event.submitter.value : "";
      if (sent) { event.preventDefault(); return; }
      if (action === "reject" && !chosenReason()) { event.preventDefault(); setMode("reject"); return; }
      if (action === "escalate" && !note.value.trim()) { event.preventDefault(); setMode("escalate"); return; }
      sent = true;
      say("Sending…");
    });
    reasons.forEach((radio) => radio.addEventListener("change", () => { if (mode !== "escalate") setMode("reject"); }));
    note.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && mode) { event.preventDefault(); submit(mode); }
      else if (event.key === "Escape") { event.preventDefault(); note.blur(); }
    });
  }

  // Press and hold on blurred media peeks; a short click reveals (the veil is a label).
  let holdTimer = null;
  let held = false;
  medias.forEach((media) => {
    media.addEventListener("pointerdown", () => {
      held = false;
      holdTimer = setTimeout(() => { held = true; setPeek(true); }, 280);
    });
    const endHold = () => { clearTimeout(holdTimer); setPeek(false); };
    media.addEventListener("pointerup", endHold);
    media.addEventListener("pointerleave", endHold);
    media.addEventListener("click", (event) => { if (held) { event.preventDefault(); held = false; } }, true);
  });

  // The score strip seeks the player; its cursor follows playback.
  const strip = $("[data-strip]");
  if (strip && player) {
    const duration = parseFloat(strip.dataset.duration) || 1;
    const cursor = $(".cursor", strip);
    $$("a[data-time]", strip).forEach((link) => link.addEventListener("click", (event) => {
      event.preventDefault();
      player.currentTime = parseFloat(link.dataset.time);
    }));
    player.addEventListener("timeupdate", () => {
      const x = Math.min(player.currentTime / duration, 1) * 1000;
      cursor.setAttribute("x1", x);
      cursor.setAttribute("x2", x);
    });
  }
  if (peak && player) {
    peak.addEventListener("click", (event) => { event.preventDefault(); player.currentTime = parseFloat(peak.dataset.peak); });
  }

  handlers.item = (event) => {
    if (isTyping(event.target)) return;
    const key = event.key;
    if (key === "h" && !event.repeat && medias.length) { setPeek(true); return; }
    if (event.repeat) return;
    const digit = /^[1-9]$/.test(key) ? parseInt(key, 10) : 0;
    if (digit && reasons[digit - 1] && mode !== "escalate") {
      event.preventDefault();
      reasons[digit - 1].checked = true;
      setMode("reject");
      return;
    }
    const actions = {
      a: () => submit("approve"),
      r: () => setMode(mode === "reject" ? "" : "reject"),
      e: () => { if ($("[data-action=escalate]")) setMode("escalate"); },
      n: () => note && note.focus(),
      Enter: () => { if (mode) submit(mode); else return false; },
      Escape: () => { setMode(""); if (document.activeElement) document.activeElement.blur(); },
      s: () => { const skip = $("[data-skip]"); if (skip) skip.form.requestSubmit(); },
      j: () => { const next = $("[data-next]"); if (next) location.href = next.href; },
      k: () => { const prev = $("[data-prev]"); if (prev) location.href = prev.href; },
      v: () => { if (reveal) reveal.checked = !reveal.checked; },
      g: () => { if (gray) gray.checked = !gray.checked; },
      m: () => { if (player) player.muted = !player.muted; },
      p: () => { if (peak && player) player.currentTime = parseFloat(peak.dataset.peak); },
      " ": () => {
        if (!player || ["BUTTON", "A"].includes(event.target.tagName)) return false;
        if (player.paused) player.play(); else player.pause();
      },
    };
    const action = actions[key];
    if (action && action() !== false) event.preventDefault();
  };

  document.addEventListener("keyup", (event) => {
    if (event.key === "h") setPeek(false);
  });

  startPresence();
}

// "Also viewing": a heartbeat tells who else has this item open, and whether
// somebody decided it meanwhile, before this moderator wastes a decision.
function startPresence() {
  const box = $("[data-presence-url]");
  if (!box) return;
  const url = box.dataset.presenceUrl;
  const seen = box.dataset.seen;
  const beat = async () => {
    if (document.hidden) return;
    const body = new FormData();
    body.append("csrfmiddlewaretoken", csrfToken());
    try {
      const response = await fetch(url, { method: "POST", body, credentials: "same-origin" });
      if (!response.ok) return;
      const data = await response.json();
      let text = data.others.length ? `Also viewing: ${data.others.join(", ")}` : "";
      if (data.seen && data.seen !== seen) {
        text = `Changed meanwhile: ${data.decision || "updated"}${data.decided_by ? " by " + data.decided_by : ""}. Reload before deciding.`;
      }
      box.textContent = text;
    } catch (error) {
      // Offline for a moment: the next beat tries again.
    }
  };
  setInterval(beat, 10000);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) beat(); });
  window.addEventListener("pagehide", () => {
    const body = new FormData();
    body.append("csrfmiddlewaretoken", csrfToken());
    body.append("leave", "1");
    navigator.sendBeacon(url, body);
  });
}

// --- Grid ------------------------------------------------------------------------------------

function setupGrid() {
  const form = $("[data-grid]");
  if (!form) return;
  const checks = $$("[data-tile-check]", form);
  const tiles = $(".tiles", form);
  const reason = $("[data-grid-reason]", form);
  const count = $("[data-count]", form);
  const all = $("[data-select-all]", form);
  const revealAll = $("[data-reveal-all]", form);
  let sent = false;

  const update = () => {
    const n = checks.filter((c) => c.checked).length;
    count.textContent = n ? `${n} selected` : "";
    all.checked = n === checks.length;
  };
  checks.forEach((c) => c.addEventListener("change", update));
  all.addEventListener("change", () => { checks.forEach((c) => { c.checked = all.checked; }); update(); });
  revealAll.addEventListener("change", () => tiles.classList.toggle("revealed", revealAll.checked));
  form.addEventListener("submit", (event) => {
    const action = event.submitter ? event.submitter.value : "";
    if (sent) { event.preventDefault(); return; }
    if (action === "release") { sent = true; return; }
    if (!checks.some((c) => c.checked)) { event.preventDefault(); count.textContent = "Select images first (X or Space)."; return; }
    if (action === "reject" && !reason.value) {
      event.preventDefault();
      // Digit keys pick the first nine reasons (option 0 is the placeholder).
      count.textContent = `Pick a reason (1–${Math.min(reason.options.length - 1, 9)}) first.`;
      reason.focus();
      return;
    }
    sent = true;
  });

  // Leaving the grid any way but its own buttons (closing the tab, another page,
  // "open" on a tile) gives its images back now, not when the lease runs out.
  window.addEventListener("pagehide", () => {
    if (sent) return;
    const body = new FormData(form);
    body.set("action", "release");
    navigator.sendBeacon(window.location.href, body);  // form.action is the "action" buttons
  });
  // Back to a grid kept in the browser's memory: its images were given back, so take them again.
  window.addEventListener("pageshow", (event) => { if (event.persisted) window.location.reload(); });

  const columns = () => {
    const top = checks.length ? checks[0].closest("[data-tile]").offsetTop : 0;
    return Math.max(1, checks.filter((c) => c.closest("[data-tile]").offsetTop === top).length);
  };
  const submit = (action) => form.requestSubmit($(`[data-action=${action}]`, form));

  handlers.grid = (event) => {
    const at = checks.indexOf(document.activeElement);
    const key = event.key;
    if (isTyping(event.target) && key !== "Escape") return;
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns(), l: 1, h: -1, j: columns(), k: -columns() };
    if (key in moves && checks.length) {
      event.preventDefault();
      const to = at < 0 ? 0 : Math.max(0, Math.min(checks.length - 1, at + moves[key]));
      checks[to].focus();
      checks[to].closest("[data-tile]").scrollIntoView({ block: "nearest" });
      return;
    }
    const digit = /^[1-9]$/.test(key) ? parseInt(key, 10) : 0;
    if (digit && reason.options[digit]) { event.preventDefault(); reason.selectedIndex = digit; return; }
    const actions = {
      x: () => { if (at >= 0) { checks[at].checked = !checks[at].checked; update(); } },
      a: () => submit("approve"),
      r: () => submit("reject"),
      v: () => { revealAll.checked = !revealAll.checked; tiles.classList.toggle("revealed", revealAll.checked); },
      Escape: () => document.activeElement && document.activeElement.blur(),
    };
    if (actions[key]) { event.preventDefault(); actions[key](); }
  };
  update();
}

if (page === "item") setupItem();
if (page === "grid") setupGrid();
