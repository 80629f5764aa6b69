"""`vae-edge bench`: latency, throughput, memory and FLOP/s of every artifact of a bundle.

One harness measures every format the way the TFLite benchmark tool, onnxruntime's perf
test and MLPerf single-stream do (load, first inference, warm-up, then timed runs until a
minimum count and duration), each engine in a fresh process, with one set of statistics.
`harness.run_bench` produces the report; `report` writes bench.json/.md/.png.
"""
