"""Drawing barn scenes: the sprites, their sizes and colours, the background, and pasting.

Every sprite is drawn with Pillow from a few shapes by a `_Pen` whose coordinates are
shares of the sprite's box, so one drawing serves every image size. `_make_*` turn a
config and the scene's random stream into a sprite (size, flip and colour varied) that
`layout.py` then places; `_Placed.paste` paints it into the image.
"""

import functools

import numpy as np
from PIL import Image
from PIL import ImageDraw

# ---------------------------------------------------------------------------------------
# Sizes, in shares of the image size S, turned into pixels once. The layouts place
# sprites by these too (the roof ridge, the horizon), so they live here, beside the
# drawings they describe.

_ANIMAL_UNIT = 0.12  # an animal's height is this share of S times its kind's factor
_ANIMAL_SHAPE = {  # kind: (height in animal units, width / height)
    "chicken": (0.75, 0.95),
    "sheep": (0.95, 1.35),
    "cow": (1.15, 1.45),
    "pig": (0.85, 1.4),
}
_BARN_WIDTH = 0.36  # of S; the barn is as tall as it is wide
_HAY_WIDTH = 0.17  # of S; the bale is 1.6 times as wide as it is tall
_HAY_ASPECT = 1.6
_RIDGE = (0.34, 0.66)  # the flat roof ridge, as shares of the barn's width
_HORIZON = {"classic": 0.58, "randomized": 0.3}  # sky above, grass below (share of S)


# ---------------------------------------------------------------------------------------
# Placed sprites and compositing.


class _Placed:
    """A sprite (RGB pixels and an opacity mask, cropped tight) at a pixel position."""

    def __init__(self, label, rgb, mask):
        self.label = label
        self.rgb = rgb  # (h, w, 3) uint8
        self.mask = mask  # (h, w) bool
        self.height, self.width = mask.shape
        self.x0 = self.y0 = 0

    def place(self, *, y1, x0=None, x1=None):
        """Sets the position from the bottom edge and the left or right edge (exclusive)."""
        self.y0 = y1 - self.height
        self.x0 = x0 if x0 is not None else x1 - self.width

    def box(self, size):
        """Normalized (ymin, xmin, ymax, xmax) on pixel edges."""
        return (
            self.y0 / size,
            self.x0 / size,
            (self.y0 + self.height) / size,
            (self.x0 + self.width) / size,
        )

    def paste(self, image):
        size = image.shape[0]
        if not (
            0 <= self.y0 and self.y0 + self.height <= size
            and 0 <= self.x0 and self.x0 + self.width <= size
        ):
            raise AssertionError(f"{self.label} placed outside the image")
        region = image[self.y0 : self.y0 + self.height, self.x0 : self.x0 + self.width]
        region[self.mask] = self.rgb[self.mask]


def _color_factors(config, rng):
    # Mostly brightness, a little hue: a strong per-channel shift would tint a white sheep
    # pink. Always drawn, so turning jitter off does not shift the rest of the stream.
    factors = rng.uniform(0.92, 1.08) * rng.uniform(0.97, 1.03, size=3)
    return factors if config.vary_color else np.ones(3)


def _jitter(rgb, factors):
    return np.clip(rgb * factors, 0, 255).astype(np.uint8)


def _scale(config, rng):
    scale = rng.uniform(0.9, 1.1)
    return scale if config.vary_scale else 1.0


def _make_animal(config, rng, kind):
    units, aspect = _ANIMAL_SHAPE[kind]
    height = max(3, round(config.image_size * _ANIMAL_UNIT * units * _scale(config, rng)))
    flip = bool(rng.integers(0, 2)) and config.vary_flip
    rgb, mask = _sprite(kind, height, round(height * aspect), flip)
    return _Placed(kind, _jitter(rgb, _color_factors(config, rng)), mask)


def _make_barn(config, rng):
    width = round(config.image_size * _BARN_WIDTH * _scale(config, rng))
    rgb, mask = _sprite("barn", width, width, False)
    return _Placed("barn", _jitter(rgb, _color_factors(config, rng)), mask)


def _make_hay(config, rng):
    width = round(config.image_size * _HAY_WIDTH * _scale(config, rng))
    rgb, mask = _sprite("hay", round(width / _HAY_ASPECT), width, False)
    return _Placed("hay", _jitter(rgb, _color_factors(config, rng)), mask)


_SKY = np.array([160, 205, 240])
_GRASS = np.array([100, 175, 75])


def _background(config, rng):
    size = config.image_size
    image = np.empty((size, size, 3), np.uint8)
    horizon = round(_HORIZON[config.layout] * size)
    image[:horizon] = _jitter(_SKY, _color_factors(config, rng))
    image[horizon:] = _jitter(_GRASS, _color_factors(config, rng))
    return image


# ---------------------------------------------------------------------------------------
# Sprites, drawn once per (kind, height, width, flip) and cached per process. Drawing is
# deterministic, so the cache cannot change an image.


@functools.lru_cache(maxsize=None)
def _sprite(kind, height, width, flip):
    """Returns `(rgb, mask)` of a sprite drawn in a height x width box, cropped tight."""
    canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    _DRAWERS[kind](_Pen(canvas))
    pixels = np.asarray(canvas)
    mask = pixels[..., 3] > 0
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    rgb, mask = pixels[crop][..., :3], mask[crop]
    if flip:
        rgb, mask = rgb[:, ::-1], mask[:, ::-1]
    rgb, mask = np.ascontiguousarray(rgb), np.ascontiguousarray(mask)
    rgb.flags.writeable = mask.flags.writeable = False
    return rgb, mask


class _Pen:
    """Draws on a canvas in coordinates that are shares of its width (x) and height (y)."""

    def __init__(self, canvas):
        self.draw = ImageDraw.Draw(canvas)
        self.w, self.h = canvas.size
        # Thin at 256 pixels, still visible at 128. A sprite under 9 pixels (a 64-pixel
        # image) drops outlines, which would otherwise cover most of it.
        self.line_width = max(1, round(self.h / 28))
        self.outline_width = self.line_width if self.h >= 9 else 0

    def _xy(self, x, y):
        return (round(x * (self.w - 1)), round(y * (self.h - 1)))

    def _box(self, x0, y0, x1, y1):
        (a, b), (c, d) = self._xy(x0, y0), self._xy(x1, y1)
        return [a, b, max(a, c), max(b, d)]

    def _outline(self, outline):
        if outline is None or not self.outline_width:
            return {}
        return {"outline": outline, "width": self.outline_width}

    def ellipse(self, x0, y0, x1, y1, fill, outline=None):
        self.draw.ellipse(self._box(x0, y0, x1, y1), fill=fill, **self._outline(outline))

    def rect(self, x0, y0, x1, y1, fill, outline=None):
        self.draw.rectangle(self._box(x0, y0, x1, y1), fill=fill, **self._outline(outline))

    def polygon(self, points, fill, outline=None):
        points = [self._xy(x, y) for x, y in points]
        self.draw.polygon(points, fill=fill, **self._outline(outline))

    def line(self, points, fill, width=1.0):
        self.draw.line(
            [self._xy(x, y) for x, y in points], fill=fill,
            width=max(1, round(self.line_width * width)),
        )

    def circle(self, cx, cy, r, fill, outline=None):
        """A circle of radius `r` in shares of the height, whatever the aspect ratio."""
        rx = r * self.h / self.w
        self.ellipse(cx - rx, cy - r, cx + rx, cy + r, fill, outline)


# Animals face right; flipping mirrors them.
_OUTLINE = (60, 60, 60)
_WHITE = (250, 250, 245)


def _draw_barn(pen):
    red, dark_red, roof, trim = (180, 35, 30), (120, 20, 20), (85, 75, 75), (245, 245, 240)
    # The roof is a dark band along a gambrel outline; its flat top (the ridge, x in
    # _RIDGE) is where the roof animal stands.
    pen.polygon(
        [(0.0, 0.56), (0.11, 0.2), (0.34, 0.0), (0.66, 0.0), (0.89, 0.2), (1.0, 0.56)],
        fill=roof,
    )
    pen.polygon(
        [(0.07, 1.0), (0.07, 0.52), (0.17, 0.26), (0.37, 0.09), (0.63, 0.09),
         (0.83, 0.26), (0.93, 0.52), (0.93, 1.0)],
        fill=red, outline=trim,
    )
    pen.rect(0.42, 0.28, 0.58, 0.43, fill=dark_red, outline=trim)  # hay loft door
    pen.rect(0.28, 0.6, 0.72, 1.0, fill=dark_red, outline=trim)  # double doors
    pen.line([(0.5, 0.6), (0.5, 1.0)], fill=trim)
    for left, right in ((0.28, 0.5), (0.5, 0.72)):
        pen.line([(left, 0.6), (right, 1.0)], fill=trim)
        pen.line([(left, 1.0), (right, 0.6)], fill=trim)


def _draw_hay(pen):
    straw, dark, twine = (230, 195, 85), (180, 140, 45), (140, 90, 40)
    pen.rect(0.0, 0.0, 1.0, 1.0, fill=straw, outline=dark)
    for y in (0.3, 0.55, 0.8):
        pen.line([(0.08, y), (0.35, y - 0.06), (0.65, y), (0.92, y - 0.06)], fill=dark)
    for x in (0.3, 0.7):
        pen.line([(x, 0.0), (x, 1.0)], fill=twine, width=1.5)


def _draw_chicken(pen):
    red, yellow = (220, 30, 30), (250, 180, 20)
    pen.line([(0.38, 0.75), (0.36, 1.0)], fill=yellow, width=1.5)
    pen.line([(0.55, 0.75), (0.57, 1.0)], fill=yellow, width=1.5)
    pen.polygon([(0.0, 0.1), (0.3, 0.42), (0.05, 0.62)], fill=_WHITE, outline=_OUTLINE)
    pen.ellipse(0.05, 0.32, 0.78, 0.84, fill=_WHITE, outline=_OUTLINE)
    pen.ellipse(0.2, 0.48, 0.55, 0.7, fill=(225, 225, 220), outline=_OUTLINE)  # wing
    pen.ellipse(0.58, 0.0, 0.8, 0.2, fill=red)  # comb
    pen.ellipse(0.52, 0.1, 0.86, 0.46, fill=_WHITE, outline=_OUTLINE)
    pen.polygon([(0.84, 0.2), (1.0, 0.28), (0.84, 0.36)], fill=yellow)  # beak
    pen.ellipse(0.74, 0.34, 0.84, 0.5, fill=red)  # wattle
    pen.circle(0.72, 0.24, 0.035, fill=(0, 0, 0))


def _draw_sheep(pen):
    wool, face = (236, 236, 232), (45, 45, 50)
    for x in (0.2, 0.32, 0.55, 0.67):
        pen.rect(x, 0.6, x + 0.06, 1.0, fill=face)
    # A cloud of overlapping circles: draw them all outlined, then all filled, so only
    # the outer scallops keep an outline.
    puffs = [(0.16, 0.35), (0.3, 0.25), (0.46, 0.23), (0.6, 0.3), (0.13, 0.55),
             (0.3, 0.6), (0.48, 0.6), (0.62, 0.52), (0.38, 0.42)]
    for cx, cy in puffs:
        pen.circle(cx, cy, 0.2, fill=_OUTLINE)
    for cx, cy in puffs:
        pen.circle(cx, cy, 0.2 - 1.2 * pen.outline_width / pen.h, fill=wool)
    pen.ellipse(0.64, 0.1, 0.78, 0.26, fill=face)  # ear
    pen.ellipse(0.7, 0.14, 1.0, 0.58, fill=face)  # head
    pen.circle(0.85, 0.28, 0.04, fill=(255, 255, 255))


def _draw_cow(pen):
    black, pink, horn = (25, 25, 25), (240, 160, 170), (225, 215, 175)
    for x in (0.14, 0.26, 0.56, 0.68):
        pen.rect(x, 0.6, x + 0.07, 1.0, fill=_WHITE, outline=_OUTLINE)
        pen.rect(x, 0.9, x + 0.07, 1.0, fill=black)  # hooves
    pen.line([(0.08, 0.28), (0.01, 0.6)], fill=black)  # tail
    pen.ellipse(0.0, 0.55, 0.05, 0.7, fill=black)
    pen.rect(0.06, 0.2, 0.8, 0.7, fill=_WHITE, outline=_OUTLINE)
    for patch in ((0.13, 0.26, 0.33, 0.5), (0.42, 0.36, 0.62, 0.64), (0.58, 0.24, 0.74, 0.4)):
        pen.ellipse(*patch, fill=black)
    pen.ellipse(0.44, 0.64, 0.56, 0.78, fill=pink)  # udder
    pen.polygon([(0.76, 0.1), (0.78, 0.0), (0.82, 0.1)], fill=horn)
    pen.polygon([(0.9, 0.1), (0.94, 0.0), (0.96, 0.1)], fill=horn)
    pen.ellipse(0.74, 0.06, 0.98, 0.5, fill=_WHITE, outline=_OUTLINE)
    pen.ellipse(0.76, 0.1, 0.88, 0.3, fill=black)  # patch round the eye
    pen.ellipse(0.8, 0.34, 1.0, 0.56, fill=pink, outline=_OUTLINE)  # muzzle


def _draw_pig(pen):
    pink, dark = (245, 160, 180), (200, 95, 120)
    for x in (0.2, 0.32, 0.56, 0.68):
        pen.rect(x, 0.66, x + 0.08, 1.0, fill=pink, outline=dark)
    pen.ellipse(-0.02, 0.18, 0.12, 0.4, fill=None, outline=dark)  # curly tail
    pen.ellipse(0.05, 0.15, 0.85, 0.84, fill=pink, outline=dark)
    pen.ellipse(0.58, 0.1, 0.92, 0.62, fill=pink, outline=dark)  # head
    pen.polygon([(0.62, 0.18), (0.68, 0.0), (0.78, 0.14)], fill=dark)  # ear
    pen.ellipse(0.86, 0.26, 1.0, 0.52, fill=(235, 125, 150), outline=dark)  # snout
    pen.circle(0.91, 0.39, 0.03, fill=(90, 30, 40))
    pen.circle(0.96, 0.39, 0.03, fill=(90, 30, 40))
    pen.circle(0.77, 0.27, 0.035, fill=(0, 0, 0))


_DRAWERS = {
    "barn": _draw_barn,
    "hay": _draw_hay,
    "chicken": _draw_chicken,
    "sheep": _draw_sheep,
    "cow": _draw_cow,
    "pig": _draw_pig,
}
