"""The VAE in a web page: an offline app written into an export bundle (`app.write_web_app`),
its JS runtime on vendored onnxruntime-web (`vendor`), a local server with the headers WASM
threads need (`server`), and headless-Chromium helpers for tests and latency (`browser`, `bench`).
"""
