// logd web: scroll logs to their newest line, and the live tail over Server-Sent Events.
// No framework and no build step; pages work without this file except the live tail.
"use strict";

const MAX_LIVE_ROWS = 5000;
const LEVELS = ["debug", "info", "warning", "error", "critical"];

function levelClass(level) {
  const name = String(level || "").toLowerCase();
  return LEVELS.includes(name) ? "lvl-" + name : "lvl-other";
}

function itemRow(item) {
  const row = document.createElement("div");
  row.className = "rec " + levelClass(item.level) + (item.event_type ? " event" : "");
  let text = item.line || [item.time, item.level, item.logger, item.msg].filter(Boolean).join(" ");
  // A session's backlog lines carry an event's type and fields beside the text, not in it.
  if (item.event_type && !text.includes(item.event_type)) {
    text += (text.endsWith(" ") ? "" : " ") + item.event_type;
    if (item.kv) text += " " + JSON.stringify(item.kv);
  }
  const traceback = String(item.exc || "").trim();
  if (traceback && !text.includes(traceback.split("\n").pop())) text += "\n" + traceback;
  if (item.app && !item.line?.includes(item.app)) {
    const tag = document.createElement("span");
    tag.className = "app-tag";
    tag.textContent = item.app;
    row.append(tag, " ");
  }
  row.append(document.createTextNode(text));
  return row;
}

function noticeRow(text) {
  const row = document.createElement("div");
  row.className = "rec notice";
  row.textContent = text;
  return row;
}

function startLive(section) {
  const box = document.getElementById("tail");
  const state = document.getElementById("live-state");
  const pause = document.getElementById("live-pause");
  const follow = document.getElementById("live-follow");
  let paused = false;
  let held = [];

  const show = (rows) => {
    box.append(...rows);
    while (box.childElementCount > MAX_LIVE_ROWS) box.firstElementChild.remove();
    if (follow.checked) box.scrollTop = box.scrollHeight;
  };
  const add = (row) => (paused ? held.push(row) : show([row]));
  const setState = (text, cls) => {
    state.textContent = text;
    state.className = "state " + cls;
  };

  // The server reconnects to a restarted daemon itself (`lost`, then `resumed` with what
  // was written meanwhile); if logd web itself goes away, EventSource retries, sending the
  // last item's id so the server resumes from there.
  const source = new EventSource(section.dataset.src);
  source.addEventListener("item", (e) => add(itemRow(JSON.parse(e.data))));
  source.addEventListener("notice", (e) => add(noticeRow(JSON.parse(e.data).notice)));
  source.addEventListener("ready", () => setState("live", "ok"));
  source.addEventListener("lost", (e) => {
    add(noticeRow(JSON.parse(e.data).reason + "; reconnecting…"));
    setState("reconnecting to logd…", "wait");
  });
  source.addEventListener("resumed", (e) => {
    const missed = JSON.parse(e.data).missed;
    add(noticeRow(`logd is back; ${missed} record${missed === 1 ? "" : "s"} written meanwhile shown above`));
    setState("live", "ok");
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      setState("disconnected: reload the page to retry", "bad");
    } else {
      setState("reconnecting to logd web…", "wait");
    }
  };
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      show(held);
      held = [];
    }
  });
  document.getElementById("live-clear").addEventListener("click", () => box.replaceChildren());
}

document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("log");
  if (log) log.scrollTop = log.scrollHeight;
  const live = document.getElementById("live");
  if (live) startLive(live);
});
