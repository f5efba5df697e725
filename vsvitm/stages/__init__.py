"""The VapourSynth stages of vsvitm.ITM, one module per part of the graph:

  common    props, shifted clips, the shared pieces of one ITM graph (Graph)
  cuts      the scene-cut detector and each frame's window of cuts
  keys      ICAM key results (modes "icam" and "full") and the "icam" output
  full      mode "full": FCPM merge, chunk recurrence, output
  temporal  mode "temporal": single-frame ICAM, key frames' radiance maps, output
"""
