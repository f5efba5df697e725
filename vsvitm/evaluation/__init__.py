"""Measurement tools: the plugin scored, timed and profiled through VapourSynth.

One module per job, each with a console entry point (setup.cfg):

* evaluate (vsvitm-evaluate): every method (vsvitm.ITM keyword arguments) on a folder of LDR/HDR
  sequences, scored (PU21-PSNR, log-L1, temporal consistency) with picture sheets; methods.py,
  sequences.py, scores.py and sheets.py are its parts.
* benchmark (vsvitm-benchmark): speed and peak memory per size, mode and backend, each configuration
  in its own process (bench_child.py); bench_models.py resolves the graphs, machine.py describes the host.
* memory_trace (vsvitm-memory-trace): which engine stage is running when a render's RSS peaks.
* pyspy_profile (vsvitm-pyspy-profile): a benchmark run sampled by py-spy, by engine part.
* farm_benchmark (vsvitm-farm-benchmark): vsvitm-farm against vspipe | x265, and a segment's overhead.
* temporal_ablation (vsvitm-temporal-ablation): the temporal mode's pieces with true and estimated alignment.
* light_level (vsvitm-light-level): MaxCLL/MaxFALL of a script's HDR10 output, for the encoder.
* soak (vsvitm-soak): many frames in order, checking that memory does not grow.

hooks.py holds the wrappers the tools put around the engine and ONNX Runtime to count and capture calls.
"""
