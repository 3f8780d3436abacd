// "Train on my voice": read prompts aloud one at a time (record, re-record, skip), send each
// recording to /v1/enrol/recordings/<prompt>, start the fine-tuning on the server, follow its
// progress, then switch the page to the personal model (with a way back, and its file).
// Shown only when the server allows enrolments (asr serve --enrol-dir).

import { Capture, wavBlob } from "/static/audio.js";

const $ = (id) => document.getElementById(id);
const PROMPTS = 60; // prompts offered; a few minutes of speech
const POLL_MS = 1000;

const enrol = {
  prompts: [], // {id, text}
  at: 0, // the prompt shown
  recorded: new Set(),
  capture: null,
  poll: null,
  ui: null, // {setStatus, errorMessage, setModel}
};

export async function setupEnrolment(ui) {
  enrol.ui = ui;
  const answer = await fetch(`/v1/enrol/prompts?n=${PROMPTS}`);
  if (!answer.ok) return; // the server does not take enrolments
  enrol.prompts = (await answer.json()).prompts;
  const status = await getStatus();
  enrol.recorded = new Set(status.recordings);
  // start at the first prompt not yet recorded
  const next = enrol.prompts.findIndex((p) => !enrol.recorded.has(p.id));
  enrol.at = next < 0 ? 0 : next;
  showPrompt();
  showStatus(status);
  $("enrol").hidden = false;
  if (status.running) follow();
  $("prompt-record").addEventListener("click", toggleRecording);
  $("prompt-skip").addEventListener("click", () => move(1));
  $("prompt-back").addEventListener("click", () => move(-1));
  $("enrol-train").addEventListener("click", startTraining);
  for (const radio of document.querySelectorAll("input[name=model]")) {
    radio.addEventListener("change", () => radio.checked && enrol.ui.setModel(radio.value));
  }
}

async function getStatus() {
  return (await fetch("/v1/enrol")).json();
}

function showPrompt() {
  const p = enrol.prompts[enrol.at];
  $("prompt").textContent = p.text;
  $("prompt").dataset.id = p.id;
  const done = enrol.recorded.has(p.id) ? " (recorded: record again to replace it)" : "";
  $("prompt-count").textContent = `sentence ${enrol.at + 1} of ${enrol.prompts.length}${done}`;
  $("prompt-back").disabled = enrol.at === 0;
  $("prompt-skip").disabled = enrol.at === enrol.prompts.length - 1;
}

function move(step) {
  if (enrol.capture) return;
  enrol.at = Math.max(0, Math.min(enrol.prompts.length - 1, enrol.at + step));
  showPrompt();
}

function showStatus(status) {
  const s = status.seconds.toFixed(0);
  const need = status.min_seconds;
  $("enrol-recorded").textContent =
    `${status.recordings.length} sentences, ${s} s recorded` +
    (status.seconds < need ? ` (at least ${need} s needed; a few minutes is better)` : "");
  $("enrol-train").disabled = status.running || status.seconds < need || !!enrol.capture;
  const p = status.progress;
  let text = "";
  if (status.running) {
    const before = p.wer_before == null ? "" : `, before ${(100 * p.wer_before).toFixed(1)}%`;
    const now = p.wer == null ? "" : `: held-out WER ${(100 * p.wer).toFixed(1)}%`;
    text = p.state === "training" ? `fine-tuning: epoch ${p.epoch} of at most ${p.epochs}${now}${before}`
                                  : "fine-tuning: starting ...";
  } else if (p.state === "done") {
    text = `your model is ready: held-out WER ${(100 * p.wer_before).toFixed(1)}% -> ${(100 * p.best_wer).toFixed(1)}%`;
    if (p.note) text += `. Note: ${p.note}.`;
  } else if (p.state === "failed") {
    text = `the fine-tuning failed: ${p.message}`;
  }
  $("enrol-progress").textContent = text;
  $("enrol-progress").classList.toggle("error", p.state === "failed" && !status.running);
  $("model-choice").hidden = !status.personal_model;
}

async function toggleRecording() {
  const button = $("prompt-record");
  if (!enrol.capture) {
    enrol.capture = new Capture();
    try {
      await enrol.capture.start();
    } catch (err) {
      enrol.capture = null;
      enrol.ui.setStatus(`no microphone: ${err.message || err.name}`, true);
      return;
    }
    button.textContent = "Stop";
    button.classList.add("on");
    $("enrol-train").disabled = true;
    enrol.ui.setStatus("recording: read the sentence aloud, then press Stop");
    return;
  }
  const { samples, rate } = await enrol.capture.stop();
  enrol.capture = null;
  button.textContent = "Record";
  button.classList.remove("on");
  const id = enrol.prompts[enrol.at].id;
  const form = new FormData();
  form.append("file", wavBlob(samples, rate), `${id}.wav`);
  const answer = await fetch(`/v1/enrol/recordings/${id}`, { method: "PUT", body: form });
  if (!answer.ok) {
    enrol.ui.setStatus(`sentence ${enrol.at + 1}: ${await enrol.ui.errorMessage(answer)}`, true);
    showStatus(await getStatus());
    return;
  }
  const status = await answer.json();
  enrol.recorded = new Set(status.recordings);
  enrol.ui.setStatus(`sentence ${enrol.at + 1} saved (${(samples.length / rate).toFixed(1)} s)`);
  showStatus(status);
  move(1);
}

async function startTraining() {
  const answer = await fetch("/v1/enrol/start", { method: "POST" });
  if (!answer.ok) {
    enrol.ui.setStatus(await enrol.ui.errorMessage(answer), true);
    return;
  }
  enrol.ui.setModel("bundled"); // the old personal model is gone until the new one is made
  $("model-bundled").checked = true;
  showStatus(await answer.json());
  follow();
}

function follow() {
  clearInterval(enrol.poll);
  enrol.poll = setInterval(async () => {
    const status = await getStatus();
    showStatus(status);
    if (status.running) return;
    clearInterval(enrol.poll);
    if (status.progress.state === "done" && status.personal_model) {
      $("model-personal").checked = true;
      enrol.ui.setModel("personal");
      enrol.ui.setStatus("transcribing with your model now (switch back below)");
    }
  }, POLL_MS);
}
