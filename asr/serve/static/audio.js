// The microphone and what the page makes of its samples: shared by app.js (record, live) and
// enrol.js (recordings of prompts).

export class Capture {
  // The microphone as mono Float32 blocks at the AudioContext's rate (an AudioWorklet).
  async start(onBlock) {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: true },
    });
    this.ctx = new AudioContext();
    await this.ctx.audioWorklet.addModule("/static/capture-worklet.js");
    this.node = new AudioWorkletNode(this.ctx, "capture");
    this.blocks = [];
    this.node.port.onmessage = (event) => {
      this.blocks.push(event.data);
      onBlock?.(event.data);
    };
    this.ctx.createMediaStreamSource(this.stream).connect(this.node);
    this.node.connect(this.ctx.destination); // silent: it only keeps the graph pulling
    return this.ctx.sampleRate;
  }

  get seconds() {
    return this.blocks.reduce((n, b) => n + b.length, 0) / this.ctx.sampleRate;
  }

  async stop() {
    this.stream.getTracks().forEach((t) => t.stop());
    this.node.port.onmessage = null;
    const rate = this.ctx.sampleRate;
    await this.ctx.close();
    return { samples: concat(this.blocks), rate };
  }
}

export function concat(blocks) {
  const out = new Float32Array(blocks.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of blocks) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

export function pcm16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    out[i] = Math.round(s < 0 ? s * 32768 : s * 32767);
  }
  return out;
}

export function wavBlob(samples, rate) {
  const pcm = pcm16(samples);
  const header = new DataView(new ArrayBuffer(44));
  const text = (at, s) => [...s].forEach((c, i) => header.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF");
  header.setUint32(4, 36 + pcm.byteLength, true);
  text(8, "WAVE");
  text(12, "fmt ");
  header.setUint32(16, 16, true);
  header.setUint16(20, 1, true); // PCM
  header.setUint16(22, 1, true); // mono
  header.setUint32(24, rate, true);
  header.setUint32(28, rate * 2, true);
  header.setUint16(32, 2, true);
  header.setUint16(34, 16, true);
  text(36, "data");
  header.setUint32(40, pcm.byteLength, true);
  return new Blob([header, pcm], { type: "audio/wav" });
}
