// The page behind `asr serve`: send a file or a recording to /v1/transcribe, or stream the
// microphone to /v1/stream; show the transcript as words that play the audio from where they
// were heard, and mark the word being spoken while it plays. No build step, nothing from elsewhere.

import { Capture, concat, pcm16, wavBlob } from "/static/audio.js";
import { setupEnrolment } from "/static/enrol.js";

const $ = (id) => document.getElementById(id);
const player = $("player");

// subtitle cues as asr.transcribe.make_segments makes them (used for live transcripts; a file's
// segments come from the server)
const CUE_SECONDS = 7.0;
const CUE_LINE_CHARS = 42;
const CUE_GAP_SECONDS = 1.0;
const CHUNK_SECONDS = 0.25; // live mode sends the microphone in pieces this long
const LOW_CONFIDENCE = 0.5; // words below this are underlined

const state = {
  words: [], // {word, start, end, confidence, el}
  segments: [], // {start, end, text}
  name: "transcript",
  audioUrl: null,
  active: null, // the highlighted word's element
  busy: false,
  model: "bundled", // or "personal": the model enrolment made ("Train on my voice")
  modelLine: "",
};

function modelQuery(sep) {
  return state.model === "personal" ? `${sep}model=personal` : "";
}

function setModel(name) {
  state.model = name;
  $("model").textContent = name === "personal" ? `${state.modelLine} [using your model]` : state.modelLine;
}

// --- status, model ---

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function describeModel() {
  let m;
  try {
    m = await (await fetch("/v1/model")).json();
    const d = m.decoder;
    const decoding = d.kind === "beam" ? `beam search (${d.beam_size}${d.lm ? " + LM" : ""})` : "greedy";
    state.modelLine =
      `model: ${m.model}, ${(m.parameters / 1e6).toFixed(1)} M parameters, ` +
      `${m.vocabulary_size} tokens, ${decoding}; up to ${m.limits.max_duration_seconds} s per file`;
    setModel(state.model);
  } catch (err) {
    $("model").textContent = "the model's description could not be read";
    return;
  }
  if (m.enrolment) await setupEnrolment({ setStatus, errorMessage, setModel });
}

async function errorMessage(response) {
  try {
    return (await response.json()).error.message;
  } catch (err) {
    return `${response.status} ${response.statusText}`;
  }
}

// --- transcript: words that play the audio ---

function clearTranscript() {
  state.words = [];
  state.segments = [];
  state.active = null;
  $("transcript").replaceChildren();
  enableDownloads(false);
}

function appendWords(words) {
  const box = $("transcript");
  box.querySelector(".partial")?.remove();
  for (const w of words) {
    if (box.childNodes.length) box.append(" ");
    const el = document.createElement("button");
    el.type = "button";
    el.className = "word";
    if (w.confidence < LOW_CONFIDENCE) el.classList.add("low");
    el.textContent = w.word;
    el.dataset.index = String(state.words.length);
    el.dataset.start = String(w.start);
    el.dataset.end = String(w.end);
    el.title = `${w.start.toFixed(2)}-${w.end.toFixed(2)} s, confidence ${w.confidence.toFixed(2)}`;
    box.append(el);
    state.words.push({ ...w, el });
  }
}

function setPartial(text) {
  const box = $("transcript");
  let el = box.querySelector(".partial");
  if (!text) {
    el?.remove();
    return;
  }
  if (!el) {
    el = document.createElement("span");
    el.className = "partial";
    box.append(el);
  }
  el.textContent = (state.words.length ? " " : "") + text;
}

function setAudio(blob) {
  if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
  state.audioUrl = URL.createObjectURL(blob);
  player.src = state.audioUrl;
  $("result").hidden = false;
}

$("transcript").addEventListener("click", (event) => {
  const el = event.target.closest(".word");
  if (!el || !player.src) return;
  player.currentTime = Number(el.dataset.start);
  highlight(player.currentTime);
  player.play().catch((err) => setStatus(`cannot play the audio here: ${err.message}`, true));
});

function highlight(t) {
  // the word whose [start, end) holds t; between words, none
  let el = null;
  for (const w of state.words) {
    if (w.start <= t && t < w.end) {
      el = w.el;
      break;
    }
    if (w.start > t) break;
  }
  if (el !== state.active) {
    state.active?.classList.remove("active");
    el?.classList.add("active");
    state.active = el;
  }
}

function followPlayback() {
  highlight(player.currentTime);
  if (!player.paused && !player.ended) requestAnimationFrame(followPlayback);
}
player.addEventListener("play", () => requestAnimationFrame(followPlayback));
player.addEventListener("seeked", () => highlight(player.currentTime));
player.addEventListener("ended", () => highlight(Infinity));

// --- subtitles ---

function clock(seconds, sep) {
  let ms = Math.round(seconds * 1000);
  const h = Math.floor(ms / 3600000);
  ms -= h * 3600000;
  const m = Math.floor(ms / 60000);
  ms -= m * 60000;
  const s = Math.floor(ms / 1000);
  ms -= s * 1000;
  const two = (n) => String(n).padStart(2, "0");
  return `${two(h)}:${two(m)}:${two(s)}${sep}${String(ms).padStart(3, "0")}`;
}

function wrapLines(text, width = CUE_LINE_CHARS) {
  const lines = [];
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const last = lines.length - 1;
    if (last >= 0 && lines[last].length + 1 + word.length <= width) lines[last] += " " + word;
    else lines.push(word);
  }
  return lines;
}

function makeSegments(words) {
  const segments = [];
  let current = [];
  const flush = () => {
    if (!current.length) return;
    const text = current.map((w) => w.word).join(" ");
    segments.push({ start: current[0].start, end: current[current.length - 1].end, text });
    current = [];
  };
  for (const w of words) {
    if (current.length) {
      const text = current.map((x) => x.word).join(" ") + " " + w.word;
      const tooLong = w.end - current[0].start > CUE_SECONDS;
      const tooWide = wrapLines(text).length > 2;
      const pause = w.start - current[current.length - 1].end > CUE_GAP_SECONDS;
      if (tooLong || tooWide || pause) flush();
    }
    current.push(w);
  }
  flush();
  return segments;
}

function toSrt(segments) {
  return segments
    .map((s, i) => `${i + 1}\n${clock(s.start, ",")} --> ${clock(s.end, ",")}\n${wrapLines(s.text).join("\n")}\n`)
    .join("\n");
}

function toVtt(segments) {
  const cues = segments.map((s) => `${clock(s.start, ".")} --> ${clock(s.end, ".")}\n${wrapLines(s.text).join("\n")}\n`);
  return ["WEBVTT\n", ...cues].join("\n");
}

function download(text, extension, type) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = `${state.name}.${extension}`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function enableDownloads(on) {
  $("srt").disabled = !on;
  $("vtt").disabled = !on;
}
$("srt").addEventListener("click", () => download(toSrt(state.segments), "srt", "application/x-subrip"));
$("vtt").addEventListener("click", () => download(toVtt(state.segments), "vtt", "text/vtt"));

// --- files ---

async function transcribeFile(blob, name) {
  if (state.busy) return;
  state.busy = true;
  player.pause();
  setStatus(`transcribing ${name} ...`);
  const form = new FormData();
  form.append("file", blob, name);
  const started = performance.now();
  try {
    const response = await fetch(`/v1/transcribe${modelQuery("?")}`, { method: "POST", body: form });
    if (!response.ok) {
      setStatus(`${name}: ${await errorMessage(response)}`, true);
      return;
    }
    const result = await response.json();
    state.name = name.replace(/\.[^.]*$/, "") || "transcript";
    setAudio(blob);
    clearTranscript();
    appendWords(result.words);
    state.segments = result.segments;
    enableDownloads(result.words.length > 0);
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    $("meta").textContent = `${result.words.length} words, ${result.duration.toFixed(2)} s of audio`;
    const by = state.model === "personal" ? " with your model" : "";
    setStatus(result.text ? `${name}: transcribed${by} in ${seconds} s` : `${name}: no speech recognised`);
  } catch (err) {
    setStatus(`cannot reach the server: ${err.message}`, true);
  } finally {
    state.busy = false;
  }
}

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (file) transcribeFile(file, file.name);
  $("file").value = "";
});

const drop = $("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) transcribeFile(file, file.name);
});

// --- the microphone ---

function micError(err) {
  setStatus(`no microphone: ${err.message || err.name}`, true);
}

let recording = null;
let ticker = null;

$("record").addEventListener("click", async () => {
  const button = $("record");
  if (!recording) {
    if (state.busy || live) return;
    recording = new Capture();
    try {
      await recording.start();
    } catch (err) {
      recording = null;
      micError(err);
      return;
    }
    button.textContent = "Stop";
    button.classList.add("on");
    $("live").disabled = true;
    ticker = setInterval(() => setStatus(`recording ... ${recording.seconds.toFixed(1)} s`), 200);
    return;
  }
  clearInterval(ticker);
  const { samples, rate } = await recording.stop();
  recording = null;
  button.textContent = "Record";
  button.classList.remove("on");
  $("live").disabled = false;
  if (!samples.length) {
    setStatus("nothing was recorded", true);
    return;
  }
  await transcribeFile(wavBlob(samples, rate), "recording.wav");
});

// --- live mode: partial text as you speak, final text at pauses ---

let live = null; // {capture, ws, queued: Float32Array[], rate}

$("live").addEventListener("click", () => (live ? stopLive() : startLive()));

async function startLive() {
  if (state.busy || recording) return;
  const capture = new Capture();
  const session = { capture, queued: [], rate: 0, ws: null, finals: [] };
  try {
    session.rate = await capture.start((block) => sendLive(session, block));
  } catch (err) {
    micError(err);
    return;
  }
  live = session;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/v1/stream?sample_rate=${session.rate}${modelQuery("&")}`);
  ws.binaryType = "arraybuffer";
  session.ws = ws;
  ws.onmessage = (message) => onLiveEvent(session, JSON.parse(message.data));
  ws.onclose = () => {
    if (live === session) stopLive(true);
  };
  player.pause();
  clearTranscript();
  $("result").hidden = false;
  $("meta").textContent = "";
  $("live").textContent = "Stop";
  $("live").classList.add("on");
  $("record").disabled = true;
  setStatus("connecting ...");
}

function sendLive(session, block) {
  session.queued.push(block);
  const queuedSamples = session.queued.reduce((n, b) => n + b.length, 0);
  if (session.ws?.readyState === WebSocket.OPEN && queuedSamples >= session.rate * CHUNK_SECONDS) {
    session.ws.send(pcm16(concat(session.queued)).buffer);
    session.queued = [];
  }
}

function onLiveEvent(session, event) {
  if (event.type === "ready") setStatus("listening: speak, and pause to make text final");
  else if (event.type === "partial") setPartial(event.text);
  else if (event.type === "final") {
    appendWords(event.words);
    session.finals.push(...event.words);
  } else if (event.type === "done") {
    state.segments = makeSegments(session.finals);
    enableDownloads(session.finals.length > 0);
    $("meta").textContent = `${session.finals.length} words, ${event.duration.toFixed(2)} s of audio`;
    setStatus(event.text ? "live transcript done: click a word to hear it" : "no speech recognised");
  } else if (event.type === "error") setStatus(`live: ${event.message}`, true);
}

async function stopLive(closedByServer = false) {
  const session = live;
  if (!session) return;
  live = null;
  $("live").textContent = "Live";
  $("live").classList.remove("on");
  $("record").disabled = false;
  const { samples, rate } = await session.capture.stop();
  const ws = session.ws;
  if (!closedByServer && ws.readyState === WebSocket.OPEN) {
    if (session.queued.length) ws.send(pcm16(concat(session.queued)).buffer);
    ws.send(JSON.stringify({ type: "end" }));
    setStatus("finishing the last words ...");
  }
  state.name = "live";
  if (samples.length) setAudio(wavBlob(samples, rate)); // the words' times count from its start
}

describeModel();
