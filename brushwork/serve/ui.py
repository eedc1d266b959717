"""The web UI: Gradio, mounted at ``/ui`` in the same server, over the same queue as the APIs.

Generate tab (with hires fix), and img2img, Inpaint (the mask painted in the browser) and Outpaint
tabs, which take the Generate tab's model, sampler, steps, CFG, seed and count. A job from any of
them waits in the server's own line, behind API jobs, and the page shows that line ("Queue 2/5 · ~14 s", from measured step times), then a progress bar, then the
images (the output files themselves). Gallery tab: the outputs folder, newest first; picking an
image shows its PNG parameters and "Reuse these settings" copies them into the Generate tab.

Gradio's own queue never holds a job back (``concurrency_limit=None``): the only line is ours.
"""

import html
import time

from brushwork.engine.params import CFG_RANGE, FILL_MODES, HIRES_UPSCALERS, HR_SCALE_RANGE, STEPS_RANGE, GenerationParams
from brushwork.errors import BrushworkError
from brushwork.paths import hide_paths, server_roots
from brushwork.serve.service import Service

POLL_SECONDS = 0.3
GALLERY_LIMIT = 48


def _pixels(path):
    """An output as a PIL image. The UI hands Gradio pixels, never paths: a folder in Gradio's
    ``allowed_paths`` would be served inline whatever its files are (HTML included)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return im.copy()


def status_html(job) -> str:
    """The one line shown under the Generate button."""
    if job.status == "queued":
        eta = f" · ~{job.eta:.0f} s" if job.eta is not None else ""
        return f'<div class="bw-status" data-status="queued">Queue {job.position}/{job.queue_length}{eta}</div>'
    if job.status == "running":
        total = job.total_steps or job.steps
        eta = f" · ~{job.eta:.0f} s left" if job.eta is not None else ""
        return (f'<div class="bw-status" data-status="running">Generating · step {job.step}/{total}{eta}'
                f'<br><progress value="{job.step}" max="{total}" style="width:100%"></progress></div>')
    if job.status == "done":
        secs = (job.finished_at or 0) - (job.started_at or 0)
        return f'<div class="bw-status" data-status="done">Done in {secs:.1f} s</div>'
    return (f'<div class="bw-status" data-status="{job.status}">{job.status.capitalize()}: '
            f'{html.escape(job.error or "")}</div>')


def job_markdown(job) -> str:
    files = ", ".join(f"`{n}`" for n in job.outputs)
    seed = (job.result or {}).get("seed", job.params.get("seed"))
    return f"Job `{job.id}` · {job.status} · seed {seed}" + (f" · {files}" if files else "")


def _edit_tab(gr, kind: str) -> dict:
    """The widgets of the img2img, inpaint or outpaint tab (model, sampler, steps, CFG, seed and count come
    from the Generate tab)."""
    w = {"prompt": gr.Textbox(label="Prompt", lines=2, elem_id=f"{kind}-prompt")}
    if kind == "inpaint":
        w["image"] = gr.ImageEditor(label="Image: paint over the area to repaint", type="pil", elem_id="inpaint-image",
                                    sources=["upload", "clipboard"], layers=False, transforms=(),
                                    brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=8))
    else:
        w["image"] = gr.Image(label="Image", type="pil", image_mode=None, sources=["upload", "clipboard"],
                              elem_id=f"{kind}-image")
    with gr.Row():
        w["strength"] = gr.Slider(0, 1, value=0.75 if kind != "outpaint" else 1.0, step=0.05,
                                  label="Denoising strength", elem_id=f"{kind}-strength")
        if kind == "inpaint":
            w["extra"] = gr.Dropdown(list(FILL_MODES), value="original", label="Masked area starts from")
        elif kind == "outpaint":
            w["extra"] = gr.Textbox("right=32", label="Extend (pixels per side)", elem_id="outpaint-extend")
        else:
            w["extra"] = gr.State(None)
    with gr.Row():
        w["button"] = gr.Button(f"{'Paint' if kind != 'img2img' else 'Generate'}", variant="primary",
                                elem_id=f"{kind}-generate")
    w["status"] = gr.HTML(elem_id=f"{kind}-status")
    w["result"] = gr.Gallery(label="Result", elem_id=f"{kind}-result", columns=4, height=420, object_fit="contain",
                             format="png")
    w["info"] = gr.Markdown(elem_id=f"{kind}-info")
    return w


def _edit_values(kind: str, image, strength: float, extra) -> dict:
    """Request values (with the images under ``_init`` / ``_mask``) from an edit tab's widgets."""
    import numpy as np
    from PIL import Image

    from brushwork.engine.images import parse_extend, parse_fill
    from brushwork.errors import InvalidParameter

    mask = None
    if kind == "inpaint":
        if not image or image.get("background") is None:
            raise InvalidParameter("image: upload an image first", field="image")
        background = image["background"]
        strokes = [np.asarray(layer.convert("RGBA"))[..., 3] for layer in image.get("layers") or []]
        if not strokes or not any(s.any() for s in strokes):
            raise InvalidParameter("mask: paint over the area to repaint first", field="mask")
        mask = Image.fromarray((np.maximum.reduce(strokes) > 0).astype(np.uint8) * 255, "L")
        image = background
    elif image is None:
        raise InvalidParameter("image: upload an image first", field="image")
    values = {"denoising_strength": float(strength), "_init": image, "_mask": mask}
    if kind == "inpaint":
        values["inpainting_fill"] = parse_fill(extra or "original")
    if kind == "outpaint":
        values["outpaint"] = parse_extend(extra or "")
    return values


def lora_tag_added(prompt: str, name: str, weight: float) -> str:
    """``prompt`` with ``<lora:NAME:WEIGHT>`` at its end, replacing a tag of the same name already there."""
    import re

    tag = f"<lora:{name}:{float(weight):g}>"
    kept = re.sub(rf"\s*<lora:{re.escape(name)}(:[^<>]*)?>", "", prompt or "", flags=re.IGNORECASE).rstrip()
    return f"{kept} {tag}" if kept else tag


def build_ui(service: Service):
    import gradio as gr

    from brushwork.engine.metadata import read_png_info
    from brushwork.engine.samplers import list_samplers, list_schedule_types

    samplers = [s["name"] for s in list_samplers()]
    schedules = [s["label"] for s in list_schedule_types()]

    def model_choices():
        try:
            names = [m["name"] for m in service.models()]
        except BrushworkError:
            names = []
        current = service.current_model()
        if current not in names:
            names.insert(0, current)
        return names, current

    def gallery_items():
        files = service.gallery(limit=GALLERY_LIMIT)
        return [(_pixels(p), p.name) for p in files], [str(p) for p in files]

    with gr.Blocks(title="brushwork", analytics_enabled=False, delete_cache=(600, 3600)) as ui:
        gr.Markdown("## brushwork")
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate"):
                prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prompt")
                negative = gr.Textbox(label="Negative prompt", elem_id="negative")
                with gr.Row():
                    model = gr.Dropdown(label="Model", choices=[], elem_id="model")
                    sampler = gr.Dropdown(label="Sampler", choices=samplers, value="DPM++ 2M", elem_id="sampler")
                    scheduler = gr.Dropdown(label="Schedule type", choices=schedules, value="Automatic")
                with gr.Row():
                    steps = gr.Slider(STEPS_RANGE[0], STEPS_RANGE[1], value=20, step=1, label="Steps", elem_id="steps")
                    cfg = gr.Slider(CFG_RANGE[0], CFG_RANGE[1], value=7, step=0.5, label="CFG scale")
                    seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)", elem_id="seed")
                with gr.Row():
                    width = gr.Slider(0, 2048, value=0, step=8, label="Width (0 = the model's native size)")
                    height = gr.Slider(0, 2048, value=0, step=8, label="Height (0 = the model's native size)")
                    count = gr.Slider(1, 16, value=1, step=1, label="Batch count")
                with gr.Row():
                    hires = gr.Checkbox(False, label="Hires fix", elem_id="hires")
                    hr_scale = gr.Slider(HR_SCALE_RANGE[0], HR_SCALE_RANGE[1], value=2, step=0.25, label="Upscale by")
                    hr_upscaler = gr.Dropdown(list(HIRES_UPSCALERS), value="Latent", label="Upscaler")
                    hr_strength = gr.Slider(0, 1, value=0.7, step=0.05, label="Hires denoising strength")
                with gr.Row():
                    lora_name = gr.Dropdown(label="LoRA", choices=[], elem_id="lora-name")
                    lora_weight = gr.Slider(-2, 2, value=1, step=0.05, label="LoRA weight", elem_id="lora-weight")
                    add_lora = gr.Button("Add LoRA to prompt", elem_id="lora-add")
                with gr.Row():
                    generate = gr.Button("Generate", variant="primary", elem_id="generate")
                    cancel = gr.Button("Cancel", elem_id="cancel")
                status = gr.HTML(elem_id="queue-status")
                result = gr.Gallery(label="Result", elem_id="result", columns=4, height=420, object_fit="contain",
                                    format="png")
                info = gr.Markdown(elem_id="job-info")
                job_id = gr.State(None)
            edit_tabs = {}
            for kind in ("img2img", "inpaint", "outpaint"):
                with gr.Tab(kind.capitalize() if kind != "img2img" else "img2img", id=kind):
                    edit_tabs[kind] = _edit_tab(gr, kind)
            with gr.Tab("Gallery", id="gallery") as gallery_tab:
                refresh = gr.Button("Refresh", elem_id="gallery-refresh")
                gallery = gr.Gallery(label="Outputs", elem_id="gallery", columns=6, height="auto", format="png")
                picked_info = gr.Textbox(label="Parameters (PNG info)", lines=4, interactive=False,
                                         elem_id="gallery-info")
                reuse = gr.Button("Reuse these settings", elem_id="reuse")
                paths = gr.State([])
                picked = gr.State(None)

        def common(prompt_v, negative_v, model_v, sampler_v, scheduler_v, steps_v, cfg_v, seed_v, w, h, n):
            return {"prompt": prompt_v or "", "negative_prompt": negative_v or "", "model": model_v or None,
                    "sampler": sampler_v, "scheduler": scheduler_v, "steps": int(steps_v), "cfg_scale": float(cfg_v),
                    "seed": None if seed_v is None or int(seed_v) < 0 else int(seed_v),
                    "width": int(w) or None, "height": int(h) or None, "n": int(n)}

        def run(*args):
            *settings, hires_v, scale_v, upscaler_v, strength_v = args
            values = common(*settings)
            if hires_v:
                values.update(enable_hr=True, hr_scale=float(scale_v), hr_upscaler=upscaler_v,
                              denoising_strength=float(strength_v))
            yield from follow(values)

        def run_edit(kind, *args):
            """An img2img / inpaint / outpaint job: this tab's prompt, image and controls, the Generate tab's
            other settings."""
            prompt_v, image_v, strength_v, extra_v, *settings = args
            values = common(prompt_v, *settings[1:])
            values["width"] = values["height"] = None  # the image's own size
            try:
                values.update(_edit_values(kind, image_v, strength_v, extra_v))
                init, mask = values.pop("_init"), values.pop("_mask")
                GenerationParams.build(**values)  # parameter errors before anything is stored
                values["init_image_sha256"] = service.inputs.put(init, field="image")[1]
                values["mask_sha256"] = None if mask is None else service.inputs.put(mask, field="mask")[1]
            except BrushworkError as exc:
                raise gr.Error(str(exc)) from None
            yield from follow(values)

        def edit_handler(kind):
            def handler(*args):
                yield from run_edit(kind, *args)
            return handler

        def follow(values):
            try:
                params = service.prepare(values)
                job = service.submit(params, source="ui")
            except BrushworkError as exc:
                raise gr.Error(hide_paths(str(exc), server_roots(service.config.home, service.config.outputs))) \
                    from None
            finished = False
            try:
                while True:
                    job = service.queue.get(job.id)
                    if job.finished:
                        finished = True
                        break
                    yield job.id, status_html(job), gr.skip(), job_markdown(job)
                    time.sleep(POLL_SECONDS)
                images = [(_pixels(service.output_path(name)), name) for name in job.outputs]
                yield job.id, status_html(job), images, job_markdown(job)
            finally:
                if not finished:  # the page went away: do not leave its job in line
                    try:
                        service.queue.cancel(job.id)
                    except BrushworkError:
                        pass

        def stop(current):
            if current:
                try:
                    service.queue.cancel(current)
                except BrushworkError:
                    pass

        def load():
            names, current = model_choices()
            items, files = gallery_items()
            return gr.update(choices=names, value=current), items, files, gr.update(choices=lora_choices())

        def lora_choices():
            try:
                return [f.name for f in service.list_networks("lora")]
            except BrushworkError:
                return []

        def insert_lora(prompt_v, name, weight):
            if not name:
                raise gr.Error("pick a LoRA first")
            return lora_tag_added(prompt_v, name, weight)

        def pick(files, evt: gr.SelectData):
            path = files[evt.index] if evt.index is not None and evt.index < len(files) else None
            if path is None:
                return "", None
            try:
                meta = read_png_info(path)
            except BrushworkError as exc:
                return f"(cannot read: {exc})", None
            own = meta.get("brushwork") or {}
            return meta.get("parameters") or "(no parameters)", own.get("params")

        def reuse_settings(p):
            if not p:
                raise gr.Error("pick an image first")
            return (p.get("prompt", ""), p.get("negative_prompt", ""), p.get("model") or gr.skip(),
                    p.get("sampler", "DPM++ 2M"), p.get("scheduler", "Automatic"), p.get("steps", 20),
                    p.get("cfg_scale", 7), p.get("seed", -1), p.get("width") or 0, p.get("height") or 0,
                    gr.Tabs(selected="generate"))

        inputs = [prompt, negative, model, sampler, scheduler, steps, cfg, seed, width, height, count]
        generate.click(run, inputs + [hires, hr_scale, hr_upscaler, hr_strength], [job_id, status, result, info],
                       concurrency_limit=None, show_progress="hidden")
        for kind, tab in edit_tabs.items():
            tab["button"].click(edit_handler(kind),
                                [tab["prompt"], tab["image"], tab["strength"], tab["extra"], *inputs],
                                [job_id, tab["status"], tab["result"], tab["info"]], concurrency_limit=None,
                                show_progress="hidden")
        cancel.click(stop, [job_id], None, concurrency_limit=None, show_progress="hidden")
        loaded = [model, gallery, paths, lora_name]
        ui.load(load, None, loaded, concurrency_limit=None, show_progress="hidden")
        refresh.click(load, None, loaded, concurrency_limit=None, show_progress="hidden")
        gallery_tab.select(load, None, loaded, concurrency_limit=None, show_progress="hidden")
        add_lora.click(insert_lora, [prompt, lora_name, lora_weight], [prompt], concurrency_limit=None,
                       show_progress="hidden")
        gallery.select(pick, [paths], [picked_info, picked], concurrency_limit=None, show_progress="hidden")
        reuse.click(reuse_settings, [picked], [prompt, negative, model, sampler, scheduler, steps, cfg, seed,
                                              width, height, tabs], concurrency_limit=None, show_progress="hidden")
    return ui


def mount_ui(app, service: Service) -> None:
    """Mount the UI at ``/ui``. Gradio's file cache (the images it shows) goes to ``<home>/serve/ui-cache``,
    a folder only this user can open (0700), and files older than an hour are deleted every ten minutes."""
    import os

    cache = service.config.queue_dir / "ui-cache"
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o700)
    os.environ["GRADIO_TEMP_DIR"] = str(cache)  # read by Gradio when the Blocks are made, below
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    gr.mount_gradio_app(app, build_ui(service), path="/ui", ssr_mode=False, footer_links=[], run_history=False, mcp_server=False,
                        enable_monitoring=False, show_error=True)
