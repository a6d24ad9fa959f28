// Diverging colour scale centred on 0, extending to the data's largest |value| (never clipped).

export type RGB = [number, number, number];

// [pale, strong] stops of each side (ColorBrewer RdBu).
const NEGATIVE: [RGB, RGB] = [
  [103, 169, 207],
  [33, 102, 172],
];
const POSITIVE: [RGB, RGB] = [
  [239, 138, 98],
  [178, 24, 43],
];
const CENTRE_LIGHT: RGB = [247, 247, 247];
const CENTRE_DARK: RGB = [48, 48, 48];
export const NAN_LIGHT: RGB = [200, 200, 200];
export const NAN_DARK: RGB = [90, 90, 90];

/** Largest |value| over all arrays, ignoring NaN; 1 when there is nothing to scale. */
export function scaleMax(arrays: ArrayLike<number>[]): number {
  let max = 0;
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) {
      const v = Math.abs(a[i]);
      if (v > max) max = v;
    }
  }
  return max > 0 && Number.isFinite(max) ? max : 1;
}

function mix(a: RGB, b: RGB, t: number): RGB {
  return [
    Math.round(a[0] + (b[0] - a[0]) * t),
    Math.round(a[1] + (b[1] - a[1]) * t),
    Math.round(a[2] + (b[2] - a[2]) * t),
  ];
}

/** Colour of `value` on a scale from -max (blue) through 0 (centre) to +max (red). */
export function divergingColor(value: number, max: number, dark = false): RGB {
  if (Number.isNaN(value)) return dark ? NAN_DARK : NAN_LIGHT;
  const centre = dark ? CENTRE_DARK : CENTRE_LIGHT;
  const t = Math.max(-1, Math.min(1, value / max));
  const [pale, strong] = t < 0 ? NEGATIVE : POSITIVE;
  const u = Math.abs(t);
  return u <= 0.5 ? mix(centre, pale, u / 0.5) : mix(pale, strong, (u - 0.5) / 0.5);
}

export function cssColor([r, g, b]: RGB): string {
  return `rgb(${r}, ${g}, ${b})`;
}

/** Tick values for the colour bar: symmetric around 0. */
export function colorbarTicks(max: number): number[] {
  return [-max, -max / 2, 0, max / 2, max];
}

/** A compact, exact-enough number: 4 significant digits, no trailing noise. */
export function formatValue(v: number, digits = 4): string {
  if (Number.isNaN(v)) return "–";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(digits - 1);
  return String(Number(v.toPrecision(digits)));
}
