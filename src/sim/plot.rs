//! Plots for `gossipnet sim --plot-dir`: the degree distribution on log-log
//! axes with its fitted power law, and a message's coverage over time.
//!
//! Only pure-Rust plotters backends are used, so that no system font or
//! graphics library is needed: text is laid out with a bundled DejaVu Sans.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Once,
};

use plotters::{
    coord::Shift,
    prelude::*,
    style::{register_font, FontStyle},
};

use super::metrics::PowerLawFit;

/// Pixels; the SVGs use the same size so both versions look alike.
const SIZE: (u32, u32) = (1024, 768);

/// Bitstream Vera licence: see `assets/fonts/LICENSE-DejaVu.txt`.
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot create plot directory {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot draw {}: {reason}", path.display())]
    Draw { path: PathBuf, reason: String },
}

/// Even the SVG backend needs the font: plotters measures text with it to
/// lay out captions, labels and the legend.
fn register_bundled_font() {
    static ONCE: Once = Once::new();
    // The bundled font is known to parse (the tests draw with it); were it
    // ever not to, laying out text fails with a font error, reported as a
    // PlotError naming the file, which is better than a panic here.
    ONCE.call_once(|| {
        let _ = register_font("sans-serif", FontStyle::Normal, DEJAVU_SANS);
    });
}

fn prepare(dir: &Path) -> Result<(), PlotError> {
    register_bundled_font();
    std::fs::create_dir_all(dir).map_err(|source| PlotError::CreateDir {
        dir: dir.to_owned(),
        source,
    })
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn render<DB: DrawingBackend>(
    backend: DB,
    path: &Path,
    draw: impl FnOnce(&DrawingArea<DB, Shift>) -> DrawResult<DB>,
) -> Result<(), PlotError> {
    let root = backend.into_drawing_area();
    root.fill(&WHITE)
        .and_then(|()| draw(&root))
        // Errors on writing surface only here: the backends write on present.
        .and_then(|()| root.present())
        .map_err(|e| PlotError::Draw {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// `sum_{j >= x_min} j^-alpha` (the Hurwitz zeta function), for alpha > 1.
fn hurwitz_zeta(alpha: f64, x_min: u32) -> f64 {
    const TERMS: u32 = 1000;
    let start = f64::from(x_min.max(1));
    let head: f64 = (0..TERMS)
        .map(|i| (start + f64::from(i)).powf(-alpha))
        .sum();
    // Euler-Maclaurin: past this many terms the rest is the integral plus
    // end corrections, accurate far beyond what a plot can show.
    let n = start + f64::from(TERMS);
    head + n.powf(1.0 - alpha) / (alpha - 1.0)
        + 0.5 * n.powf(-alpha)
        + alpha / 12.0 * n.powf(-alpha - 1.0)
}

/// The fitted law over [x_min, k_max], scaled to the tail's share of peers
/// so that it lies on the points it was fitted to.
fn fit_line(fit: &PowerLawFit, n: usize, k_max: u32) -> Vec<(f64, f64)> {
    // At alpha <= 1 the law cannot be normalised: there is no line to draw.
    if n == 0 || !fit.alpha.is_finite() || fit.alpha <= 1.0 {
        return Vec::new();
    }
    let scale = fit.tail as f64 / n as f64 / hurwitz_zeta(fit.alpha, fit.x_min);
    let lo = f64::from(fit.x_min.max(1));
    let hi = f64::from(k_max).max(lo);
    const STEPS: u32 = 64;
    (0..=STEPS)
        .map(|i| {
            let k = lo * (hi / lo).powf(f64::from(i) / f64::from(STEPS));
            (k, scale * k.powf(-fit.alpha))
        })
        .filter(|(_, p)| p.is_finite() && *p > 0.0)
        .collect()
}

/// A log axis needs 0 < lo < hi: pads the data's range by `factor` either
/// side, with a default when there is no data.
fn log_range(values: impl Iterator<Item = f64>, factor: f64, default: (f64, f64)) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !(lo.is_finite() && lo > 0.0) {
        return default;
    }
    let (lo, hi) = (lo / factor, hi * factor);
    // Plotters labels powers of ten, and within less than a decade only the
    // values just above one: so such a range starts at a power of ten (a
    // hair below it, lest rounding in plotters skip it).
    if hi / lo < 10.0 {
        (10f64.powf(lo.log10().floor()) * 0.999, hi)
    } else {
        (lo, hi)
    }
}

/// Tick labels without float noise: "0.001", "2.5", "100", "1e-5".
fn tick(v: &f64) -> String {
    if *v != 0.0 && v.abs() < 1e-3 {
        return format!("{v:.0e}");
    }
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Writes `degree.svg` and `degree.png` into `dir`: the share of peers with
/// each degree k >= 1 on log-log axes, with the fitted law if there is one.
pub fn write_degree_plots(
    dir: &Path,
    degrees: &[u32],
    fit: Option<&PowerLawFit>,
) -> Result<Vec<PathBuf>, PlotError> {
    prepare(dir)?;
    let n = degrees.len();
    let mut counts = BTreeMap::<u32, usize>::new();
    for k in degrees.iter().filter(|k| **k > 0) {
        *counts.entry(*k).or_default() += 1;
    }
    let points: Vec<(f64, f64)> = counts
        .iter()
        .map(|(k, c)| (f64::from(*k), *c as f64 / n as f64))
        .collect();
    let k_max = counts.keys().next_back().copied().unwrap_or(1);
    let line = fit.map_or_else(Vec::new, |f| fit_line(f, n, k_max));
    let all = || points.iter().chain(&line);
    let x = log_range(all().map(|p| p.0), 1.5, (1.0, 10.0));
    let y = log_range(all().map(|p| p.1), 2.0, (1e-3, 1.0));
    let chart = DegreeChart {
        n,
        points,
        line,
        x,
        y,
        label: fit.map(|f| format!("power law, alpha = {:.2}, x_min = {}", f.alpha, f.x_min)),
    };
    let svg = dir.join("degree.svg");
    render(SVGBackend::new(&svg, SIZE), &svg, |r| chart.draw(r))?;
    let png = dir.join("degree.png");
    render(BitMapBackend::new(&png, SIZE), &png, |r| chart.draw(r))?;
    Ok(vec![svg, png])
}

/// What the degree plot shows, drawn once per backend.
struct DegreeChart {
    n: usize,
    points: Vec<(f64, f64)>,
    line: Vec<(f64, f64)>,
    x: (f64, f64),
    y: (f64, f64),
    label: Option<String>,
}

impl DegreeChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (x, y) = (self.x, self.y);
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("Degree distribution, {} peers", self.n),
                ("sans-serif", 28),
            )
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d((x.0..x.1).log_scale(), (y.0..y.1).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("degree k")
            .y_desc("share of peers P(k)")
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 20))
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .draw()?;
        let dot = BLUE.filled();
        chart
            .draw_series(self.points.iter().map(|p| Circle::new(*p, 4, dot)))?
            .label("peers")
            .legend(move |p| Circle::new(p, 4, dot));
        if let Some(label) = &self.label {
            let pen = RED.stroke_width(2);
            chart
                .draw_series(LineSeries::new(self.line.iter().copied(), pen))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x - 10, y), (x + 10, y)], pen));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 18))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
    }
}

/// Writes `coverage.svg` into `dir`: the share of peers that have a message
/// against the milliseconds since it was created. `curve` is sorted by time.
pub fn write_coverage_plot(dir: &Path, curve: &[(f64, f64)]) -> Result<PathBuf, PlotError> {
    prepare(dir)?;
    let points: Vec<(f64, f64)> = curve
        .iter()
        .filter(|(t, s)| t.is_finite() && s.is_finite())
        .map(|(t, s)| (*t, s * 100.0))
        .collect();
    // Coverage holds until the next peer is reached: a step after each point.
    let mut steps = Vec::with_capacity(points.len() * 2);
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            steps.push((p.0, points[i - 1].1));
        }
        steps.push(*p);
    }
    let t_lo = points.iter().map(|p| p.0).fold(0.0, f64::min);
    let t_hi = points.iter().map(|p| p.0).fold(t_lo, f64::max);
    let t_hi = if t_hi > t_lo {
        t_hi + (t_hi - t_lo) * 0.02
    } else {
        t_lo + 1.0
    };

    let path = dir.join("coverage.svg");
    render(SVGBackend::new(&path, SIZE), &path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Coverage of the message over time", ("sans-serif", 28))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(t_lo..t_hi, 0.0..101.0)?;
        chart
            .configure_mesh()
            .x_desc("time since the message was created (ms)")
            .x_label_formatter(&tick)
            .y_desc("peers reached")
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 20))
            .y_label_formatter(&|v| format!("{v:.0}%"))
            .draw()?;
        chart.draw_series(LineSeries::new(steps, BLUE.stroke_width(2)))?;
        Ok(())
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

    /// About 3000 degrees whose counts fall as k^-2.6.
    fn power_law_degrees() -> Vec<u32> {
        (1..=60u32)
            .flat_map(|k| {
                let count = (2000.0 * f64::from(k).powf(-2.6)).round() as usize;
                std::iter::repeat_n(k, count.max(1))
            })
            .collect()
    }

    fn fit(alpha: f64, x_min: u32, tail: usize) -> PowerLawFit {
        PowerLawFit {
            alpha,
            x_min,
            ks: 0.03,
            tail,
        }
    }

    /// Width and height from the IHDR chunk, which must come first.
    fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert!(bytes.starts_with(PNG_SIGNATURE), "not a PNG");
        assert_eq!(&bytes[12..16], b"IHDR");
        let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
        (be(16), be(20))
    }

    fn read(path: &Path) -> Vec<u8> {
        let bytes = std::fs::read(path).unwrap();
        assert!(!bytes.is_empty(), "{} is empty", path.display());
        bytes
    }

    #[test]
    fn degree_plots_show_points_and_fit() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plots");
        let degrees = power_law_degrees();
        let tail = degrees.iter().filter(|k| **k >= 5).count();
        let paths = write_degree_plots(&out, &degrees, Some(&fit(2.6, 5, tail))).unwrap();
        assert_eq!(paths, [out.join("degree.svg"), out.join("degree.png")]);
        let svg = String::from_utf8(read(&paths[0])).unwrap();
        assert!(svg.contains("<svg"));
        assert!(svg.contains(&format!("Degree distribution, {} peers", degrees.len())));
        assert!(svg.contains("\npower law, alpha = 2.60, x_min = 5\n"));
        assert!(svg.contains("\npeers\n"), "the legend names the points");
        assert_eq!(png_size(&read(&paths[1])), SIZE);
    }

    #[test]
    fn fit_line_lies_on_the_tail() {
        // Degrees drawn exactly from the law: the line meets P(x_min).
        let alpha = 2.5;
        let norm = hurwitz_zeta(alpha, 3);
        let n = 100_000;
        let line = fit_line(&fit(alpha, 3, n), n, 100);
        let (k, p) = line[0];
        assert_eq!(k, 3.0);
        assert!((p - 3f64.powf(-alpha) / norm).abs() < 1e-12);
        assert!((line.last().unwrap().0 - 100.0).abs() < 1e-9);
    }

    #[test]
    fn hurwitz_zeta_matches_known_values() {
        let pi2_6 = std::f64::consts::PI.powi(2) / 6.0;
        assert!((hurwitz_zeta(2.0, 1) - pi2_6).abs() < 1e-9);
        assert!((hurwitz_zeta(2.0, 2) - (pi2_6 - 1.0)).abs() < 1e-9);
        assert!((hurwitz_zeta(3.0, 1) - 1.202_056_903_159_594).abs() < 1e-9);
    }

    #[test]
    fn degree_plots_survive_edge_cases() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[u32], Option<PowerLawFit>); 7] = [
            (&[], None),
            (&[], Some(fit(2.6, 5, 0))),
            (&[0, 0, 0], None),
            (&[4; 10], None),
            (&[4; 10], Some(fit(3.0, 4, 10))),
            (&[1, 2, 3, 50], Some(fit(0.8, 2, 3))),
            (&[1, 2, 3], Some(fit(2.0, 10, 3))),
        ];
        for (i, (degrees, fit)) in cases.iter().enumerate() {
            let out = dir.path().join(i.to_string());
            let paths = write_degree_plots(&out, degrees, fit.as_ref()).unwrap();
            assert!(String::from_utf8(read(&paths[0])).unwrap().contains("<svg"));
            assert_eq!(png_size(&read(&paths[1])), SIZE);
        }
    }

    #[test]
    fn coverage_plot_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let curve = [(0.0, 0.001), (3.5, 0.01), (12.0, 0.4), (30.0, 1.0)];
        let path = write_coverage_plot(dir.path(), &curve).unwrap();
        assert_eq!(path, dir.path().join("coverage.svg"));
        let svg = String::from_utf8(read(&path)).unwrap();
        assert!(svg.contains("<svg"));
        assert!(svg.contains("100%"));
        assert!(svg.contains("time since the message was created (ms)"));
    }

    #[test]
    fn coverage_plot_survives_edge_cases() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [&[(f64, f64)]; 4] = [
            &[],
            &[(0.0, 0.5)],
            &[(0.0, 0.1), (0.0, 0.2), (0.0, 1.0)],
            &[(f64::NAN, 0.5), (2.0, f64::INFINITY), (5.0, 1.0)],
        ];
        for (i, curve) in cases.iter().enumerate() {
            let path = write_coverage_plot(&dir.path().join(i.to_string()), curve).unwrap();
            assert!(String::from_utf8(read(&path)).unwrap().contains("<svg"));
        }
    }

    #[test]
    fn unwritable_dir_is_named_in_the_error() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let dir = file.path().join("plots");
        for err in [
            write_degree_plots(&dir, &[1, 2, 3], None).unwrap_err(),
            write_coverage_plot(&dir, &[(0.0, 1.0)]).unwrap_err(),
        ] {
            let msg = err.to_string();
            assert!(msg.contains(&dir.display().to_string()), "{msg}");
        }
    }

    #[test]
    fn unwritable_file_is_named_in_the_error() {
        // A directory where the SVG should go makes the write itself fail.
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("degree.svg");
        std::fs::create_dir(&svg).unwrap();
        let msg = write_degree_plots(dir.path(), &[1, 2, 3], None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&svg.display().to_string()), "{msg}");
    }
}
