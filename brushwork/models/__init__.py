"""Models you already have: detection by content, offline loading, a local hub with licences.

Public API (import from the submodules; nothing heavy is imported here):

- ``inspect.inspect_model(path, *, hash=False, allow_pickle=False) -> dict``
- ``load.load_pipeline(model_ref, *, dtype, device, vae, allow_pickle, home, config, commercial,
  allow_paths, hash) -> load.LoadedModel``
- ``registry.Registry(home)`` (add / get / list / remove / file_hash) and ``registry.resolve_model``
- ``licenses.check_commercial(name, license_id, *, loras=())`` and ``licenses.LicenseRefused``
- ``convert.convert_to_safetensors(src, *, out, allow_pickle, force)``
- CLI: ``brushwork models inspect|add|list|show|remove|convert`` (``commands.register``)
"""
