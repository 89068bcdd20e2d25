"""Vision-language models: loading, the one preprocessing path, and the tiny offline default.

Modules (import from them directly; this package imports nothing heavy on its own):
`inputs` (encode, configure_processor), `loading` (load_vlm), `tiny` (build_tiny),
`procedural` (generate_items), `tiny_cache` (where `builtin:tiny` is cached; its build is
`mmzero_runtime.warmstart`), `errors` (ModelError, InputError).
"""
