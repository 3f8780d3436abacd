// Runs on the audio thread: hands every block of microphone samples (mono, Float32, at the
// AudioContext's rate) to the page, which records them and/or streams them to /v1/stream.
class CaptureProcessor extends AudioWorkletProcessor {
  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length) {
      const mono = new Float32Array(channels[0].length);
      for (const channel of channels) {
        for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / channels.length;
      }
      this.port.postMessage(mono, [mono.buffer]);
    }
    return true;
  }
}
registerProcessor("capture", CaptureProcessor);
