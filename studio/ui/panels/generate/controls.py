"""The Generate parameter form: prompt, negative prompt, LoRAs, size, sampling, the hires fix,
seed and batch.

The form knows nothing about jobs: :meth:`GenerateControls.request` turns its state into a
:class:`Txt2ImgRequest` and :meth:`GenerateControls.set_request` fills it from one.
"""

from __future__ import annotations

import re

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.requests import (
    MAX_COUNT,
    MAX_SIDE,
    MAX_STEPS,
    MAX_WALK_FRAMES,
    SCHEDULERS,
    Txt2ImgRequest,
)
from studio.library.families import family as family_of
from studio.pipelines.diffusion.pixel import UNCONDITIONAL
from studio.ui.panels.generate.controlnet import ControlNetSection
from studio.ui.panels.generate.hires import HiresSection
from studio.ui.panels.generate.loras import LoraSection
from studio.ui.panels.generate.size_presets import presets_for
from studio.ui.widgets.basics import muted_label, section_label
from studio.ui.widgets.seed import SeedBox, new_seed

CLIP_TOKEN_LIMIT = 75  # CLIP sees 77 tokens, two of which are start/end markers
SEED_MODES = ("random", "fixed", "reuse")
SEED_MODE_LABELS = {"random": "Random", "fixed": "Fixed", "reuse": "Reuse last"}
_TOKEN_RE = re.compile(r"[A-Za-z]+|\d|[^\sA-Za-z\d]")


def approx_clip_tokens(text: str) -> int:
    """Roughly how many CLIP tokens ``text`` takes, without loading a tokenizer.

    CLIP's BPE gives common words one token, splits long or rare words into pieces of about six
    letters, and gives each digit and punctuation mark its own token.
    """
    count = 0
    for piece in _TOKEN_RE.findall(text):
        count += 1 + (len(piece) - 1) // 7 if piece.isalpha() else 1
    return count


PROMPT_HINT = "Describe the image: a lighthouse on a cliff at dawn, oil painting, warm light…"
GAN_PROMPT_HINT = ("Not used: this GAN (trained in Studio) draws from its seed alone. Pick a seed "
                   "and a count; the size enlarges its small pictures by whole pixels.")


class SizeSpinBox(QSpinBox):
    """A pixel size that is always a multiple of 8 (typed values are rounded to the nearest)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRange(64, MAX_SIDE)
        self.setSingleStep(8)
        self.setSuffix(" px")
        self.setCorrectionMode(QSpinBox.CorrectionMode.CorrectToNearestValue)
        self.setKeyboardTracking(False)
        self.setMinimumWidth(96)  # below its size hint: the sidebar is narrow

    def valueFromText(self, text: str) -> int:  # noqa: N802 - Qt override
        value = super().valueFromText(text)
        return max(self.minimum(), min(self.maximum(), round(value / 8) * 8))

    def setValue(self, value: int) -> None:  # noqa: N802 - Qt override
        super().setValue(round(int(value) / 8) * 8)


def _compact(combo: QComboBox, chars: int = 8) -> QComboBox:
    # Long entries must not make the whole column wider than the sidebar.
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    return combo


class GenerateControls(QWidget):
    """Every parameter of a text-to-image request, laid out as a column."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._family = "unknown"
        self._last_seed: int | None = None
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(6)

        # Prompt and negative prompt, each with an approximate CLIP token counter.
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText(PROMPT_HINT)
        self.prompt.setTabChangesFocus(True)
        self.prompt.setMinimumHeight(96)
        self.prompt_tokens = muted_label()
        self.negative = QPlainTextEdit()
        self.negative.setPlaceholderText("What to avoid: blurry, low quality, text…")
        self.negative.setTabChangesFocus(True)
        self.negative.setFixedHeight(62)
        self.negative_tokens = muted_label()
        # A model trained in Train's image diffusion lesson takes a class instead of a prompt.
        self._classes: list[str] | None = None  # None: a Stable Diffusion model
        self.class_box = QWidget()
        class_col = QVBoxLayout(self.class_box)
        class_col.setContentsMargins(0, 0, 0, 0)
        class_col.setSpacing(6)
        self.class_picker = _compact(QComboBox(), 10)
        self.class_picker.setObjectName("generateClass")
        self.class_picker.setToolTip("What the model draws: one of the classes it was trained "
                                     "on, or anything it learned when it has none")
        self.class_note = muted_label("")
        self.class_note.setWordWrap(True)
        class_col.addWidget(section_label("Class"))
        class_col.addWidget(self.class_picker)
        class_col.addWidget(self.class_note)
        col.addWidget(self.class_box)
        self.class_box.hide()
        self.prompt_box = QWidget()
        prompt_col = QVBoxLayout(self.prompt_box)
        prompt_col.setContentsMargins(0, 0, 0, 0)
        prompt_col.setSpacing(6)
        prompt_col.addLayout(self._header("Prompt", self.prompt_tokens))
        prompt_col.addWidget(self.prompt)
        prompt_col.addLayout(self._header("Negative prompt", self.negative_tokens))
        prompt_col.addWidget(self.negative)
        prompt_col.addSpacing(8)
        col.addWidget(self.prompt_box)

        # LoRAs from the library, each with a weight (prompt tags work as well).
        self.loras = LoraSection()
        col.addWidget(self.loras)
        col.addSpacing(8)

        # Size with presets for the model family and a swap button.
        self.width_box = SizeSpinBox()
        self.height_box = SizeSpinBox()
        self.swap_button = QToolButton(text="⇄")
        self.swap_button.setToolTip("Swap width and height")
        self.swap_button.clicked.connect(self.swap_size)
        self.swap_button.setFixedWidth(38)
        self.preset = _compact(QComboBox(), 16)
        self.preset.setToolTip("Sizes the model was trained for")
        self.preset.activated.connect(self._apply_preset)
        self.size_box = QWidget()
        size_col = QVBoxLayout(self.size_box)
        size_col.setContentsMargins(0, 0, 0, 0)
        size_col.setSpacing(6)
        size_col.addWidget(section_label("Size"))
        size_col.addWidget(self.preset)
        size_row = QHBoxLayout()
        size_row.setSpacing(6)
        size_row.addWidget(self.width_box, 1)
        times = muted_label("×")
        size_row.addWidget(times)
        size_row.addWidget(self.height_box, 1)
        size_row.addWidget(self.swap_button)
        size_col.addLayout(size_row)
        size_col.addSpacing(8)
        col.addWidget(self.size_box)

        # Sampling: steps, CFG, scheduler.
        col.addWidget(section_label("Sampling"))
        grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(6)
        grid.setColumnStretch(1, 1)
        self.steps = QSpinBox()
        self.steps.setRange(1, MAX_STEPS)
        self.steps_slider = QSlider(Qt.Orientation.Horizontal)
        self.steps_slider.setRange(1, 100)
        self._link(self.steps_slider, self.steps, 1)
        self.cfg = QDoubleSpinBox()
        self.cfg.setRange(0.0, 30.0)
        self.cfg.setSingleStep(0.5)
        self.cfg.setDecimals(1)
        self.cfg.setToolTip("How closely to follow the prompt (CFG scale). "
                            "Turbo and LCM models want 0–2.")
        self.cfg_slider = QSlider(Qt.Orientation.Horizontal)
        self.cfg_slider.setRange(0, 200)
        self._link(self.cfg_slider, self.cfg, 10)
        self.scheduler = _compact(QComboBox(), 10)
        for key, label in SCHEDULERS.items():
            self.scheduler.addItem(label, key)
        self.cfg_label = QLabel("CFG scale")
        for row, (name, slider, box) in enumerate((("Steps", self.steps_slider, self.steps),
                                                   (self.cfg_label, self.cfg_slider, self.cfg))):
            grid.addWidget(name if isinstance(name, QLabel) else QLabel(name), row, 0)
            grid.addWidget(slider, row, 1)
            box.setFixedWidth(86)
            grid.addWidget(box, row, 2)
        grid.addWidget(QLabel("Sampler"), 2, 0)
        grid.addWidget(self.scheduler, 2, 1, 1, 2)
        col.addLayout(grid)
        col.addSpacing(4)
        self.hires = HiresSection()
        col.addWidget(self.hires)
        self.controlnet = ControlNetSection()
        col.addWidget(self.controlnet)
        col.addSpacing(8)

        # Seed and batch.
        col.addWidget(section_label("Seed & batch"))
        seed_row = QHBoxLayout()
        seed_row.setSpacing(6)
        self.seed_mode = _compact(QComboBox(), 7)
        for mode in SEED_MODES:
            self.seed_mode.addItem(SEED_MODE_LABELS[mode], mode)
        self.seed = SeedBox()
        self.seed.setToolTip("Image i of a batch uses seed + i")
        self.dice = QToolButton(text="⚄")
        self.dice.setToolTip("Roll a new seed (and keep it fixed)")
        self.dice.clicked.connect(self.roll_seed)
        self.dice.setFixedWidth(38)
        seed_row.addWidget(self.seed_mode)
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.dice)
        col.addLayout(seed_row)
        # A1111's variation seed: a second noise blended into the seed's by the strength.
        variation_row = QHBoxLayout()
        variation_row.setSpacing(6)
        variation_row.addWidget(QLabel("Variation"))
        self.variation_seed = SeedBox()
        self.variation_seed.setToolTip("Variation seed: its noise is blended into the seed's. "
                                       "While on, every image keeps the seed and image i uses "
                                       "variation seed + i")
        self.variation_strength = QDoubleSpinBox()
        self.variation_strength.setRange(0.0, 1.0)
        self.variation_strength.setSingleStep(0.05)
        self.variation_strength.setDecimals(2)
        self.variation_strength.setSpecialValueText("off")
        self.variation_strength.setToolTip("Variation strength: 0 is off (the plain image), "
                                           "1 the variation seed's noise alone")
        self.variation_strength.setFixedWidth(86)
        variation_row.addWidget(self.variation_seed, 1)
        variation_row.addWidget(self.variation_strength)
        col.addLayout(variation_row)
        count_row = QHBoxLayout()
        count_row.addWidget(QLabel("Images"))
        self.count = QSpinBox()
        self.count.setRange(1, min(MAX_COUNT, 100))
        self.count.setToolTip("How many images to make; they run one after another")
        count_row.addStretch(1)
        self.count.setFixedWidth(86)
        count_row.addWidget(self.count)
        col.addLayout(count_row)
        # A GAN's latent walk (as studio generate --walk-to SEED --frames N --gif)
        self.walk_box = QWidget()
        walk_row = QHBoxLayout(self.walk_box)
        walk_row.setContentsMargins(0, 0, 0, 0)
        walk_row.setSpacing(6)
        walk_row.addWidget(QLabel("Walk to seed"))
        self.walk_to = SeedBox()
        self.walk_to.setValue(1)
        self.walk_to.setToolTip("The seed the latent walk ends at: the frames go from the seed "
                                "above to this one")
        self.walk_frames = QSpinBox()
        self.walk_frames.setRange(2, MAX_WALK_FRAMES)
        self.walk_frames.setValue(16)
        self.walk_frames.setSuffix(" frames")
        self.walk_frames.setToolTip("Frames of the walk, saved as PNGs and one GIF beside them")
        self.walk_button = QPushButton("Walk")
        self.walk_button.setToolTip("Make the latent walk: its frames and a GIF, in the gallery")
        walk_row.addWidget(self.walk_to, 1)
        walk_row.addWidget(self.walk_frames)
        walk_row.addWidget(self.walk_button)
        self.walk_box.setVisible(False)
        col.addWidget(self.walk_box)
        col.addStretch(1)

        self.prompt.textChanged.connect(self._update_tokens)
        self.negative.textChanged.connect(self._update_tokens)
        self.seed_mode.currentIndexChanged.connect(self._seed_mode_changed)
        for signal in (self.prompt.textChanged, self.negative.textChanged,
                       self.width_box.valueChanged, self.height_box.valueChanged,
                       self.steps.valueChanged, self.cfg.valueChanged, self.count.valueChanged,
                       self.scheduler.currentIndexChanged, self.seed_mode.currentIndexChanged,
                       self.variation_seed.valueChanged, self.variation_strength.valueChanged):
            signal.connect(self.changed)
        self.loras.changed.connect(self.changed)
        self.class_picker.currentIndexChanged.connect(self.changed)
        self.hires.changed.connect(self.changed)
        self.controlnet.changed.connect(self.changed)
        for box in (self.width_box, self.height_box):
            box.valueChanged.connect(lambda _v: self.hires.set_base_size(
                self.width_box.value(), self.height_box.value()))
        self.width_box.valueChanged.connect(self._sync_preset)
        self.height_box.valueChanged.connect(self._sync_preset)
        self.set_request(Txt2ImgRequest(model=""), seed_mode="random")
        self.set_family("unknown")

    # -- public API --------------------------------------------------------------------------
    @property
    def seed_mode_key(self) -> str:
        return self.seed_mode.currentData()

    def set_seed_mode(self, mode: str) -> None:
        self.seed_mode.setCurrentIndex(max(0, SEED_MODES.index(mode) if mode in SEED_MODES else 0))

    def resolve_seed(self) -> int:
        """The concrete seed the next job uses, following the seed mode."""
        mode = self.seed_mode_key
        if mode == "random":
            return new_seed()
        if mode == "reuse" and self._last_seed is not None:
            return self._last_seed
        return self.seed.seed()

    def note_seed_used(self, seed: int) -> None:
        """Remember the seed of the job just submitted and show it."""
        self._last_seed = seed
        self.seed.setValue(seed)

    def request(self, model: str, seed: int | None = None) -> Txt2ImgRequest:
        """The request these controls describe (``seed`` None: the seed field's value). For a
        GAN the greyed-out prompts and LoRAs are left out: it draws from the seed alone; for a
        model from Train's image diffusion lesson the picked class is the prompt."""
        gan, pixel = self.seed_alone, self.pixel_model
        return Txt2ImgRequest(
            model=model,
            prompt=(self.class_picker.currentData() or "") if pixel
            else "" if gan else self.prompt.toPlainText().strip(),
            negative_prompt="" if gan or pixel else self.negative.toPlainText().strip(),
            steps=self.steps.value(),
            cfg=round(self.cfg.value(), 2),
            width=self.width_box.value(),
            height=self.height_box.value(),
            seed=self.seed.seed() if seed is None else int(seed),
            count=self.count.value(),
            scheduler=self.scheduler.currentData() or "default",
            loras=[] if gan or pixel else self.loras.loras(),
            variation_seed=self.variation_seed.seed(),
            variation_strength=round(self.variation_strength.value(), 2),
            **({"hires": False} if gan or pixel else self.hires.fields()),
            controlnets=[] if gan or pixel or not self.controlnet.isEnabled()
            else self.controlnet.fields(),
        )

    def set_request(self, request: Txt2ImgRequest, seed_mode: str = "fixed") -> None:
        """Fill every control from ``request``; the seed becomes ``seed_mode`` (default fixed)."""
        if self._classes is not None:
            self.class_picker.setCurrentIndex(max(0, self.class_picker.findData(request.prompt)))
        else:
            self.prompt.setPlainText(request.prompt)
            self.negative.setPlainText(request.negative_prompt)
        self.steps.setValue(int(request.steps))
        self.cfg.setValue(float(request.cfg))
        self.width_box.setValue(int(request.width))
        self.height_box.setValue(int(request.height))
        self.seed.setValue(int(request.seed))
        self._last_seed = int(request.seed)
        self.count.setValue(max(1, min(self.count.maximum(), int(request.count))))
        index = self.scheduler.findData(request.scheduler)
        self.scheduler.setCurrentIndex(max(0, index))
        self.set_seed_mode(seed_mode)
        self._seed_mode_changed()  # also when the mode stayed: the field must match it
        self.loras.set_loras(list(request.loras or []))
        self.variation_seed.setValue(int(request.variation_seed))
        self.variation_strength.setValue(float(request.variation_strength))
        self.hires.set_request(request)
        self.controlnet.set_request(request)

    def set_family(self, family: str) -> None:
        """Offer the sizes the model family was trained for, and the LoRAs made for it. A GAN
        trained in Studio draws from its seed alone: the prompt boxes say so and, with the
        diffusion settings and LoRAs, are greyed out (their text is kept for the next model)."""
        self._family = family or "unknown"
        gan = self._family == "gan"
        self.prompt.setPlaceholderText(GAN_PROMPT_HINT if gan else PROMPT_HINT)
        for widget in (self.prompt, self.negative, self.steps, self.cfg, self.scheduler,
                       self.loras, self.hires):
            widget.setEnabled(not gan)
        for edit in (self.prompt, self.negative):
            edit.setToolTip(GAN_PROMPT_HINT if gan else "")
        self.loras.set_family(self._family)
        self.controlnet.set_family(self._family, family_of(self._family))
        self.hires.set_family(family_of(self._family))
        self.hires.setEnabled(not gan and self.hires.usable)
        self._offer_samplers(family_of(self._family))
        self._show_guidance(family_of(self._family), gan)
        self.walk_box.setVisible(gan)
        self.preset.blockSignals(True)
        self.preset.clear()
        self.preset.addItem("Custom size", None)
        for width, height, label in presets_for(self._family):
            self.preset.addItem(f"{width} × {height}  ·  {label}", f"{width}x{height}")
        self.preset.blockSignals(False)
        self._sync_preset()

    def _show_guidance(self, family, gan: bool) -> None:
        """CFG or FLUX's distilled "Guidance", named as the family uses it; a family without a
        negative prompt greys the box out (its text is kept for the next model)."""
        distilled = family is not None and family.guidance == "distilled"
        self.cfg_label.setText("Guidance" if distilled else "CFG scale")
        self.cfg.setToolTip(
            family.guidance_hint if family is not None and family.guidance_hint else
            f"{family.label} guidance (distilled into the model: one pass per step). 3.5 is "
            "usual for dev; schnell ignores it." if distilled else
            "How closely to follow the prompt (CFG scale). Turbo and LCM models want 0–2.")
        takes_negative = family is None or family.negative_prompt
        self.negative.setEnabled(not gan and takes_negative)
        # 75-token CLIP chunks are A1111's reading; SD 3.5/FLUX read longer prompts with T5
        a1111 = family is None or family.a1111_prompts
        self.prompt_tokens.setVisible(a1111)
        self.negative_tokens.setVisible(a1111 and takes_negative)
        self.negative.setPlaceholderText(
            "What to avoid: blurry, low quality, text…" if takes_negative else
            f"{family.label} takes no negative prompt")

    def _offer_samplers(self, family) -> None:
        """Only the samplers the family can use are enabled (SD 3.5: its own flow matching);
        one it cannot use is replaced by "Model default"."""
        allowed = family.samplers if family is not None and family.samplers else None
        model = self.scheduler.model()
        for row in range(self.scheduler.count()):
            item = model.item(row)
            if item is not None:
                item.setEnabled(allowed is None or self.scheduler.itemData(row) in allowed)
        if allowed is not None and self.scheduler.currentData() not in allowed:
            self.scheduler.setCurrentIndex(self.scheduler.findData(allowed[0]))
        self.scheduler.setToolTip(f"{family.label} samples with its own scheduler"
                                  if allowed is not None else "")

    def set_pixel_model(self, classes: list[str] | None, size: int = 0) -> None:
        """``classes`` (possibly empty: unconditional) for a model trained in Train's image
        diffusion lesson: a class picker replaces the prompt, the size is the model's and
        guidance, LoRAs, variations and the hires fix do not apply; None: another model again
        (call :meth:`set_family` first: a GAN keeps its greyed-out settings)."""
        self._classes = None if classes is None else list(classes)
        pixel = classes is not None
        self.class_box.setVisible(pixel)
        for box in (self.prompt_box, self.size_box, self.loras):
            box.setVisible(not pixel)
        for widget in (self.cfg, self.cfg_slider, self.hires, self.controlnet):
            widget.setEnabled(not pixel and not self.seed_alone)
        if not pixel and not self.seed_alone:  # what the family cannot use stays greyed out
            self.controlnet.set_family(self._family, family_of(self._family))
            self.hires.set_family(family_of(self._family))
        for widget in (self.variation_seed, self.variation_strength):
            widget.setEnabled(not pixel)
        if not pixel:
            return
        self.class_picker.blockSignals(True)
        self.class_picker.clear()
        if classes:
            for name in classes:
                self.class_picker.addItem(name, name)
        else:
            self.class_picker.addItem(UNCONDITIONAL, "")
        self.class_picker.blockSignals(False)
        self.variation_strength.setValue(0.0)
        where = f"{size}×{size} px" if size else "the model's size"
        self.class_note.setText(
            f"Trained in Train: draws at {where}; "
            + ("pick the class to draw." if classes else "it has no classes (unconditional)."))

    @property
    def seed_alone(self) -> bool:
        """The model draws from its seed alone (a GAN): no prompt, no LoRAs."""
        return self._family == "gan"

    @property
    def pixel_model(self) -> bool:
        """The model was trained in Train's image diffusion lesson: a class, no LoRAs."""
        return self._classes is not None

    def swap_size(self) -> None:
        w, h = self.width_box.value(), self.height_box.value()
        self.width_box.setValue(h)
        self.height_box.setValue(w)

    def roll_seed(self) -> None:
        self.seed.setValue(new_seed())
        self.set_seed_mode("fixed")

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    def _header(title: str, counter: QLabel) -> QHBoxLayout:
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(section_label(title))
        row.addStretch(1)
        row.addWidget(counter)
        return row

    @staticmethod
    def _link(slider: QSlider, box: QSpinBox | QDoubleSpinBox, scale: int) -> None:
        """Keep a slider and a spin box in step (the box may go beyond the slider's range)."""
        def from_slider(v: int) -> None:
            if round(box.value() * scale) != v:
                box.setValue(v / scale if scale != 1 else v)

        def from_box(v: float) -> None:
            slider.blockSignals(True)
            slider.setValue(round(v * scale))
            slider.blockSignals(False)

        slider.valueChanged.connect(from_slider)
        box.valueChanged.connect(from_box)

    def _update_tokens(self) -> None:
        for edit, label in ((self.prompt, self.prompt_tokens),
                            (self.negative, self.negative_tokens)):
            n = approx_clip_tokens(edit.toPlainText())
            chunks = max(1, -(-n // CLIP_TOKEN_LIMIT))
            # As A1111 counts: "80 / 150" — a longer prompt is encoded in 75-token chunks.
            label.setText(f"~{n} / {chunks * CLIP_TOKEN_LIMIT} tokens")
            label.setProperty("warning", False)
            label.setToolTip("Approximate CLIP token count. A longer prompt is encoded in "
                             "chunks of 75 tokens, as A1111 does; BREAK starts a new chunk.")

    def _seed_mode_changed(self) -> None:
        mode = self.seed_mode_key
        self.seed.setReadOnly(mode != "fixed")
        self.seed.setEnabled(mode == "fixed")
        # Before the first job a random seed has no number yet: say so instead of showing 0.
        self.seed.setSpecialValueText("random" if mode == "random" else "")
        if mode == "reuse" and self._last_seed is not None:
            self.seed.setValue(self._last_seed)

    def _apply_preset(self, index: int) -> None:
        size = self.preset.itemData(index)
        if size:
            width, height = (int(v) for v in size.split("x"))
            self.width_box.setValue(width)
            self.height_box.setValue(height)

    def _sync_preset(self) -> None:
        size = f"{self.width_box.value()}x{self.height_box.value()}"
        index = self.preset.findData(size)
        self.preset.blockSignals(True)
        self.preset.setCurrentIndex(index if index >= 0 else 0)
        self.preset.blockSignals(False)
