"""Training recipes: `config/training/*.yaml` -> typed configuration, validated up front."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from saliency_ros.models.losses import GROUND_TRUTH_LOSSES
from saliency_ros.models.skd import SKDWidths, student_shape
from saliency_ros.paths import repo_root
from saliency_ros.runtime.model_card import PAIR_ALIGNMENTS
from saliency_ros.training.common import SCHEDULES, LoopConfig
from saliency_ros.training.data.pairs import AugmentConfig


@dataclass(frozen=True)
class SyntheticData:
    """Generated drone-scene sequences (smoke tests, extra data)."""

    sequences: int = 4
    frames: int = 12
    width: int = 160
    height: int = 96
    target_scale: tuple[float, float] = (0.05, 0.12)  # target length as a fraction of the height


@dataclass(frozen=True)
class DataConfig:
    train: tuple[Path, ...]  # video datasets: every stage
    images: tuple[Path, ...]  # image SOD datasets (DUTS-TR): SOD stage 1 only, no temporal pairs
    val: Path | None
    layout: str
    gap: tuple[int, int]
    synthetic: SyntheticData | None  # adds generated sequences to train (and val if none)
    boxes: tuple[Path, ...] = ()  # clips with target boxes (aerial_dev): scored into the cards, never trained on


def paper_loss(stage: str) -> str:
    """Paper 000's loss for an SOD stage: Lg (BCE) on single frames, the distillation Ls + Lt in
    stage 2; what a stage trains with unless its recipe names another, and what a record from
    before `sod.<stage>.loss` existed was trained with."""
    return "distillation" if stage == "stage2" else "bce"


@dataclass(frozen=True)
class SODRecipe:
    model: str
    input_size: int
    alpha: float
    video_repeat: int  # stage 1 lists each video frame this many times next to the images
    stage1: LoopConfig
    stage2: LoopConfig
    # Stage 1 run on after its decay has ended (sod.extend): the same data and loss, a second
    # decay from the loop's own rate (a warm restart, SGDR, Loshchilov & Hutter 2017), so stage 1
    # can be lengthened without training again the iterations it has. None: no such stage.
    extend: LoopConfig | None = None
    # Stage 1 continued on its data at the shapes the net is exported at (sod.finetune, its loop's
    # `shapes`), between stage 1 and stage 2: the net learns square crops at input_size and flies
    # at 224 x 320 and 128 x 256, where it sees objects at other scales (FixRes, Touvron et al.
    # 2019: a short fine-tune at the test resolution). None: no such stage.
    finetune: LoopConfig | None = None
    # Each stage's zoom-out of its samples (sod.<stage>.augment: zoom_out, zoom_out_max, border;
    # the other ranges are the paper's and stay at their defaults); a stage not listed: none.
    augment: dict[str, AugmentConfig] = field(default_factory=dict)
    # Each single-frame stage's ground-truth loss (sod.<stage>.loss: a name of
    # models.losses.GROUND_TRUTH_LOSSES); a stage not listed trains with the paper's BCE.
    losses: dict[str, str] = field(default_factory=dict)
    # Stages that start from the weights as the ONNX export holds them (sod.<stage>.from_export:
    # true): every BatchNorm folded into its convolution, then re-estimated on the stage's own
    # samples before its first step (training.common.unfold_batchnorms). The shipped fine-tune
    # was made so (session 17); from the checkpoint as it is, the same fine-tune scores lower and
    # its /saliency INT8 copy misses the rule (docs/training_levers.md §13-14).
    from_export: frozenset[str] = frozenset()
    # Stages trained once per seed from the same start, keeping the uniform average of the
    # runs' weights (sod.<stage>.soup: the seeds; a "model soup", Wortsman et al. 2022): runs
    # fine-tuned from one set of weights stay in one basin, and their average scored above
    # their mean on all but one measure (a tie), with less of the seed's luck (§18 of
    # docs/training_levers.md).
    # Each seed draws its own sample order and augmentation; a stage not listed trains once,
    # at its loop's seed.
    soups: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def stages(self) -> tuple[tuple[str, LoopConfig], ...]:
        """The stages in training order, by the names their run folders and records carry."""
        middle = tuple((name, loop) for name, loop in (("extend", self.extend), ("finetune", self.finetune))
                       if loop is not None)
        return (("stage1", self.stage1), *middle, ("stage2", self.stage2))

    def stage_augment(self, stage: str) -> AugmentConfig:
        return self.augment.get(stage, AugmentConfig())

    def stage_loss(self, stage: str) -> str:
        """The loss `stage` trains with: the recipe's `sod.<stage>.loss`, else the paper's."""
        return self.losses.get(stage, paper_loss(stage))


@dataclass(frozen=True)
class MosaicConfig:
    """Students' mosaics (training.skd.mosaic): the chance that a training item is a mosaic,
    and the grid sides n (n x n tiles) drawn from, uniformly."""

    probability: float = 0.0
    grids: tuple[int, ...] = (2,)


@dataclass(frozen=True)
class PasteConfig:
    """Objects pasted into the students' pairs (training.skd.paste): the chance that a pair gets
    1 to `most` of them, their height as a fraction of the input's (drawn uniformly from
    `height`), their largest move between the two frames (a fraction of the height, each axis),
    and how many objects are cut out of data.images (a seeded draw) to paste from."""

    probability: float = 0.0
    objects: int = 2000
    most: int = 3
    height: tuple[float, float] = (0.03, 0.12)
    motion: float = 0.03


@dataclass(frozen=True)
class SKDRecipe:
    sizes: tuple[int, ...]
    mu: float
    pair_alignment: str  # "none", or the runtime.egomotion model the pairs are aligned with
    synthetic: SyntheticData | None  # drone scenes (small moving targets) added for the students
    students: LoopConfig
    sst: LoopConfig
    # Per input size, the batch size of every student loop (students and sst give it for the
    # sizes not listed): the same pixels per step at 128x128 as at 64x64 take a quarter of the batch.
    batch_sizes: dict[int, int] = field(default_factory=dict)
    # Still images of data.images (DUTS-TR) the students also train on, each paired with
    # itself under a random camera motion (training.skd); 0: none, more than there are: all.
    images: int = 0
    # Whether Sst's fine-tuning sees the stills too. DUTS objects fill far more of a frame than
    # DAVIS's or a drone's; with false, Ss and St learn from the stills and Sst, which fuses
    # them, is fitted to the video pairs only.
    sst_images: bool = True
    # Largest random zoom-in of a training pair (a crop of 1/zoom of the side at a random
    # place, the same for both frames and every map; training.skd); 1: no zoom. The students
    # see DAVIS's 30 clips many times over: crops are new framings of them.
    zoom: float = 1.0
    # Mosaics of n x n training pairs, each shrunk n times (training.skd): small objects
    # anywhere in the frame, as a drone sees them; probability 0: none.
    mosaic: MosaicConfig = MosaicConfig()
    # Still images' objects (data.images, DUTS-TR), cut out by their masks, shrunk to a
    # drone target's size and pasted into pairs, moving between the frames (training.skd):
    # small targets with real textures on real backgrounds; probability 0: none.
    paste: PasteConfig = PasteConfig()
    # Width:height of the students' input (models.skd.student_shape): each size keeps its
    # size x size pixels at this aspect, in training and in the exported model; 1: square.
    aspect: float = 1.0
    # The students' layer shapes, every student of the recipe the same. The recipe sets only
    # their dilations (skd.dilations, layers 7, 8, 10 and 11; models.skd.SKDWidths): a wider
    # field of view at the same cost (2, 4, 2, 4: 56 -> 120 px), measured worse on the drone
    # clips (docs/training_levers.md §2, session 11); all 1: the paper's student.
    widths: SKDWidths = SKDWidths()

    def shape(self, size: int) -> tuple[int, int]:
        """(height, width) of the students of `size`."""
        return student_shape(size, self.aspect)

    def loop(self, kind: str, size: int) -> LoopConfig:
        """The loop of `kind` (students | sst) at `size`."""
        cfg = self.sst if kind == "sst" else self.students
        return replace(cfg, batch_size=self.batch_sizes.get(size, cfg.batch_size))


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe; every default lives in `load_recipe`, beside the YAML keys it reads."""

    seed: int
    data: DataConfig
    sod: SODRecipe
    skd: SKDRecipe
    source: dict[str, Any]  # the YAML as read, recorded in model cards
    path: Path
    export_int8: bool = False  # also INT8 copies of the exported models (training.quantize)
    calibration_pairs: int = 128  # train-clip frame pairs that calibrate the INT8 copies
    # (height, width) each student size is exported at (export.student_shape), where it
    # differs from the shape it was trained at (skd.aspect): the students are fully
    # convolutional, so weights trained on squeezed squares can read a 16:9 frame un-squeezed.
    student_shapes: dict[int, tuple[int, int]] = field(default_factory=dict)
    # (height, width) the SOD net is exported at (export.sod_shape), where it differs from its
    # square training size: its crops keep about their frame's aspect (3:4 to 4:3), so a 16:9
    # camera frame squeezed into a square shows it objects 1.8x narrower than those it trained on.
    sod_shape: tuple[int, int] | None = None
    # (height, width) of a second export of the SOD net, for /saliency (export.saliency_shape;
    # training.export.saliency_sod_file): at 128 x 256 it costs the node what Sst-128 does and
    # scores far better (docs/training_levers.md §3); None: /saliency has only the students.
    saliency_shape: tuple[int, int] | None = None
    # The students' INT8 copies keep the two convolutions that read the frames in float
    # (export.student_float_inputs): session 3 saw 8-bit frames cost small targets; session 10
    # measured no gain over all-INT8 on another student (docs/training_levers.md §2), so off.
    student_float_inputs: bool = False
    # The same for the SOD net's /saliency export (export.saliency_float_inputs): all-INT8 it
    # lost 0.030 aerial box-NSS, over the rule; with its first convolution float, 0.007
    # (docs/training_levers.md §3, session 13).
    saliency_float_inputs: bool = False

    def export_shape(self, size: int) -> tuple[int, int]:
        """(height, width) of the exported student of `size`."""
        return self.student_shapes.get(size, self.skd.shape(size))


def _loop(d: dict[str, Any], seed: int, where: str) -> LoopConfig:
    known = {f.name for f in fields(LoopConfig)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    if missing := {"iterations", "batch_size", "lr"} - set(d):
        raise ValueError(f"{where}: {sorted(missing)} must be set")
    if "frozen" in d:
        if isinstance(d["frozen"], str) or not all(isinstance(n, str) for n in d["frozen"]):
            raise ValueError(f"{where}: frozen must be a list of submodule names, got {d['frozen']!r}")
        d = {**d, "frozen": tuple(d["frozen"])}
    if "shapes" in d:
        try:
            shapes = tuple((int(h), int(w)) for h, w in d["shapes"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: shapes must be a list of [height, width], got {d['shapes']!r}") from err
        if not shapes or min(min(s) for s in shapes) < 1:
            raise ValueError(f"{where}: shapes must be a non-empty list of positive [height, width], got {d['shapes']!r}")
        d = {**d, "shapes": shapes}
    cfg = LoopConfig(**{"seed": seed, **d})
    if cfg.iterations < 1 or cfg.batch_size < 1 or cfg.lr <= 0 or cfg.head_lr_mult <= 0:
        raise ValueError(f"{where}: iterations, batch_size, lr and head_lr_mult must be positive, got {d}")
    if not 0.0 <= cfg.ema < 1.0:
        raise ValueError(f"{where}: ema is a decay in [0, 1) (0 = off), got {cfg.ema}")
    if cfg.optimizer not in ("sgd", "adam") or cfg.schedule not in SCHEDULES:
        raise ValueError(f"{where}: optimizer must be sgd or adam and schedule one of {SCHEDULES}, got {d}")
    if not isinstance(cfg.freeze_bn, bool) or not isinstance(cfg.channels_last, bool):
        raise ValueError(f"{where}: freeze_bn and channels_last are true or false, got {d}")
    return cfg


def _synthetic(d: dict[str, Any] | None) -> SyntheticData | None:
    if not d:
        return None
    if "target_scale" in d:
        d = {**d, "target_scale": tuple(float(v) for v in d["target_scale"])}
    return SyntheticData(**d)


def _sod_augment(d: dict[str, Any], where: str) -> AugmentConfig:
    known = ("border", "zoom_out", "zoom_out_max")
    unknown = set(d) - set(known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: {list(known)})")
    cfg = AugmentConfig(zoom_out=float(d.get("zoom_out", 0.0)),
                        zoom_out_max=float(d.get("zoom_out_max", AugmentConfig.zoom_out_max)),
                        border=str(d.get("border", AugmentConfig.border)))
    if not 0.0 <= cfg.zoom_out <= 1.0 or cfg.zoom_out_max < 1.0 or cfg.border not in ("mirror", "mean"):
        raise ValueError(f"{where}: zoom_out is a chance in [0, 1], zoom_out_max a side factor >= 1 "
                         f"and border mirror or mean, got {d}")
    return cfg


def _sod_stages(s: dict[str, Any], seed: int) -> tuple[dict[str, LoopConfig | None], dict[str, AugmentConfig],
                                                      dict[str, str], frozenset[str], dict[str, tuple[int, ...]]]:
    """sod.stage1, sod.extend and sod.finetune (both optional) and sod.stage2, each a loop with
    an optional `augment`, for the single-frame stages `loss`, and for extend and finetune
    `from_export` and `soup`; the loops and, per stage that sets them, its zoom-out, its loss and
    its soup's seeds, and the stages from the export."""
    if "augment" in s:
        raise ValueError("sod.augment is set per stage: sod.<stage>.augment (stage1, extend, finetune or stage2)")
    defaults = {"stage1": {"iterations": 1000, "batch_size": 8, "lr": 1e-3},
                "extend": None,
                "finetune": None,
                "stage2": {"iterations": 500, "batch_size": 8, "lr": 1e-4, "momentum": 0.95}}
    loops: dict[str, LoopConfig | None] = {}
    augment = {}
    losses = {}
    from_export = set()
    soups = {}
    for name, default in defaults.items():
        d = dict(s[name] if name in s else default or {})
        if (seeds := d.pop("soup", None)) is not None:
            # The continuations of stage 1 only: the soup was measured on the fine-tune, where
            # every run starts from the same finished stage 1.
            if name not in ("extend", "finetune") or "seed" in d or not isinstance(seeds, list) \
                    or len(seeds) < 2 or len(set(seeds)) < len(seeds) \
                    or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in seeds):
                raise ValueError(f"sod.{name}.soup: extend and finetune take a list of two or more distinct seeds "
                                 f"(>= 0) in place of the loop's seed, got {seeds!r}"
                                 + (" beside seed" if "seed" in d else ""))
            soups[name] = tuple(seeds)
        if not isinstance(exported := d.pop("from_export", False), bool):  # 1.0 == True, yet no flag
            raise ValueError(f"sod.{name}.from_export is true or false, got {exported!r}")
        if exported:
            if name == "stage1":  # it starts from ImageNet weights, which have no export
                raise ValueError("sod.stage1.from_export: only a stage after stage 1 can start from an export")
            from_export.add(name)
        if (a := d.pop("augment", None)) is not None:
            augment[name] = _sod_augment(a, f"sod.{name}.augment")
        if (loss := d.pop("loss", None)) is not None:
            # Stage 2's loss is the paper's distillation (Ls + Lt), not a choice of the recipe.
            if name == "stage2" or loss not in GROUND_TRUTH_LOSSES:
                raise ValueError(f"sod.{name}.loss: stage1, extend and finetune take one of {sorted(GROUND_TRUTH_LOSSES)}; "
                                 f"stage2 trains with the paper's distillation loss; got {loss!r}")
            losses[name] = str(loss)
        loops[name] = _loop(d, seed, f"sod.{name}") if name in s or default else None
    return loops, augment, losses, frozenset(from_export), soups


def _mosaic(d: dict[str, Any] | None) -> MosaicConfig:
    if not d:
        return MosaicConfig()
    unknown = set(d) - {"probability", "grids"}
    if unknown:
        raise ValueError(f"skd.mosaic: unknown keys {sorted(unknown)} (known: ['grids', 'probability'])")
    cfg = MosaicConfig(float(d.get("probability", 0.0)), tuple(int(n) for n in d.get("grids", (2,))))
    if not 0.0 <= cfg.probability <= 1.0 or not cfg.grids or min(cfg.grids) < 2:
        raise ValueError(f"skd.mosaic: probability must lie in [0, 1] and grids be sides >= 2, got {d}")
    return cfg


def _paste(d: dict[str, Any] | None) -> PasteConfig:
    if not d:
        return PasteConfig()
    known = {f.name for f in fields(PasteConfig)}
    if unknown := set(d) - known:
        raise ValueError(f"skd.paste: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    default = PasteConfig()
    cfg = PasteConfig(probability=float(d.get("probability", default.probability)),
                      objects=int(d.get("objects", default.objects)), most=int(d.get("most", default.most)),
                      height=tuple(float(v) for v in d.get("height", default.height)),  # type: ignore[arg-type]
                      motion=float(d.get("motion", default.motion)))
    if len(cfg.height) != 2:
        raise ValueError(f"skd.paste.height must be [low, high], got {d['height']}")
    low, high = cfg.height
    if (not 0.0 <= cfg.probability <= 1.0 or cfg.objects < 1 or cfg.most < 1 or not 0.0 < low <= high <= 0.5
            or not 0.0 <= cfg.motion <= 0.25):
        raise ValueError("skd.paste: probability must lie in [0, 1], objects and most be >= 1, height "
                         f"[low, high] with 0 < low <= high <= 0.5 and motion in [0, 0.25], got {d}")
    return cfg


def load_recipe(path: Path) -> Recipe:
    """Read a recipe; relative data paths are resolved against the repository root."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    seed = int(raw.get("seed", 0))
    root = repo_root()
    d = raw.get("data", {})
    synth = d.get("synthetic")
    data = DataConfig(
        train=tuple((root / p).resolve() for p in d.get("train", [])),
        images=tuple((root / p).resolve() for p in d.get("images", [])),
        val=(root / d["val"]).resolve() if d.get("val") else None,
        layout=d.get("layout", "auto"),
        gap=tuple(d.get("gap", (1, 3))),  # type: ignore[arg-type]
        synthetic=_synthetic(synth),
        boxes=tuple((root / p).resolve() for p in d.get("boxes", [])),
    )
    if not data.train and data.synthetic is None:
        raise ValueError(f"{path}: data.train is empty and no synthetic data is asked for")
    s = raw.get("sod", {})
    loops, augment, losses, from_export, soups = _sod_stages(s, seed)
    sod = SODRecipe(
        model=s.get("model", "sod_effl0"),
        input_size=int(s.get("input_size", 256)),
        alpha=float(s.get("alpha", 0.7)),
        video_repeat=int(s.get("video_repeat", 1)),
        stage1=loops["stage1"], stage2=loops["stage2"], extend=loops["extend"],  # type: ignore[arg-type]
        finetune=loops["finetune"],
        augment=augment, losses=losses, from_export=from_export, soups=soups,
    )
    k = raw.get("skd", {})
    adam = {"iterations": 500, "batch_size": 128, "lr": 1e-3, "optimizer": "adam", "schedule": "constant"}
    skd_synth = k.get("synthetic")
    skd = SKDRecipe(
        sizes=tuple(int(v) for v in k.get("sizes", (64,))),
        mu=float(k.get("mu", 0.5)),
        pair_alignment=str(k.get("pair_alignment", "none")),
        synthetic=_synthetic(skd_synth),
        students=_loop(k.get("students", adam), seed, "skd.students"),
        sst=_loop(k.get("sst", adam), seed, "skd.sst"),
        batch_sizes={int(size): int(b) for size, b in (k.get("batch_sizes") or {}).items()},
        images=int(k.get("images") or 0),
        sst_images=k.get("sst_images", True),
        zoom=float(k.get("zoom", 1.0)),
        mosaic=_mosaic(k.get("mosaic")),
        paste=_paste(k.get("paste")),
        aspect=float(k.get("aspect", 1.0)),
        widths=SKDWidths(dilations=k.get("dilations", SKDWidths.dilations)),
    )
    if not 0.25 <= skd.aspect <= 4.0:
        raise ValueError(f"skd.aspect (width:height) must lie in [0.25, 4], got {skd.aspect}")
    shapes = [skd.shape(size) for size in skd.sizes]
    if any(side % n for shape in shapes for side in shape for n in skd.mosaic.grids):
        raise ValueError(f"skd.mosaic.grids {list(skd.mosaic.grids)} must divide both sides of every student "
                         f"input {[f'{h}x{w}' for h, w in shapes]}")
    if not isinstance(skd.sst_images, bool):
        raise ValueError(f"skd.sst_images must be true or false, got {skd.sst_images!r}")
    if skd.zoom < 1.0:
        raise ValueError(f"skd.zoom must be >= 1 (1: no zoom), got {skd.zoom}")
    if skd.paste.probability and not data.images:
        raise ValueError("skd.paste cuts its objects out of data.images, which names none")
    if skd.images < 0 or (skd.images and not data.images):
        raise ValueError(f"skd.images must be >= 0 and needs data.images, got {skd.images} with "
                         f"data.images {[str(p) for p in data.images]}")
    if any(b < 1 for b in skd.batch_sizes.values()) or set(skd.batch_sizes) - set(skd.sizes):
        raise ValueError(f"skd.batch_sizes must give positive batch sizes for sizes in {list(skd.sizes)}, "
                         f"got {skd.batch_sizes}")
    if sod.video_repeat < 0 or (sod.video_repeat == 0 and not data.images):
        raise ValueError(f"sod.video_repeat must be >= 1, or 0 with data.images, got {sod.video_repeat}")
    if skd.pair_alignment not in PAIR_ALIGNMENTS:
        raise ValueError(f"skd.pair_alignment must be one of {PAIR_ALIGNMENTS}, got {skd.pair_alignment!r}")
    if sod.input_size % 32:
        raise ValueError(f"sod.input_size must be a multiple of 32, got {sod.input_size}")
    for name, loop in sod.stages():
        if any(side % 32 for shape in loop.shapes for side in shape):
            raise ValueError(f"sod.{name}.shapes must be [height, width] pairs of multiples of 32 (the SOD net's "
                             f"stride), got {[list(shape) for shape in loop.shapes]}")
    if skd.students.shapes or skd.sst.shapes:  # their datasets (teacher caches) build one shape
        raise ValueError("shapes is for the SOD stages only: skd.students and skd.sst train at their size")
    export = raw.get("export") or {}
    known = {"int8", "calibration_pairs", "student_shape", "sod_shape", "saliency_shape", "student_float_inputs",
             "saliency_float_inputs"}
    if set(export) - known:
        raise ValueError(f"export: unknown keys {sorted(set(export) - known)} (known: {sorted(known)})")
    calibration_pairs = int(export.get("calibration_pairs", Recipe.calibration_pairs))
    if calibration_pairs < 1:
        raise ValueError(f"export.calibration_pairs must be >= 1, got {export['calibration_pairs']}")
    shapes = export.get("student_shape") or {}
    if (set(map(int, shapes)) - set(skd.sizes)
            or not all(len(hw) == 2 and min(hw) >= 4 and not hw[0] % 4 and not hw[1] % 4 for hw in shapes.values())):
        raise ValueError(f"export.student_shape must map sizes in skd.sizes {list(skd.sizes)} to [height, width], "
                         f"both positive multiples of 4, got {shapes}")
    student_shapes = {int(size): (int(hw[0]), int(hw[1])) for size, hw in shapes.items()}
    if student_shapes and data.val is None:
        raise ValueError("export.student_shape needs data.val: a reshaped student is scored again on it")
    return Recipe(seed=seed, data=data, sod=sod, skd=skd, source=raw, path=Path(path).resolve(),
                  export_int8=bool(export.get("int8", False)), calibration_pairs=calibration_pairs,
                  student_shapes=student_shapes, sod_shape=_sod_shape(export, "sod_shape", data),
                  saliency_shape=_sod_shape(export, "saliency_shape", data),
                  student_float_inputs=bool(export.get("student_float_inputs", False)),
                  saliency_float_inputs=bool(export.get("saliency_float_inputs", False)))


def _sod_shape(export: dict[str, Any], key: str, data: DataConfig) -> tuple[int, int] | None:
    """export.<key>: a shape the SOD net is exported at, both sides multiples of its stride."""
    shape = export.get(key)
    if shape is None:
        return None
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) and v >= 32 and not v % 32 for v in shape)):
        raise ValueError(f"export.{key} must be [height, width], both positive multiples of 32, got {shape!r}")
    if data.val is None:
        raise ValueError(f"export.{key} needs data.val: a reshaped SOD net is scored again on it")
    return shape[0], shape[1]
