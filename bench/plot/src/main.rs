//! `bench-plot`: draws the CSV of `bench/window-sweep.sh` as a PNG.
//!
//! Input: lines `server,mode,sockets,window,rps,p50_us,p99_us,lost` (a header line
//! starting with `server` is skipped); several lines for one (server, mode,
//! window), from repeated runs, are reduced to their median. Output: one line per
//! (server, mode), requests/s against requests in flight (sockets × window, on a
//! log2 axis).
//!
//! Text is drawn with `ab_glyph` from a TrueType file (`--font`, by default
//! DejaVu Sans where Debian installs it); no system font lookup is involved. When
//! the font cannot be read, the chart is drawn without any text, axes or grid (the
//! lines and markers only) and a warning says so.
//!
//! Usage: `bench-plot IN.csv OUT.png [--title TEXT] [--font FILE.ttf]`

use std::collections::BTreeMap;
use std::process::ExitCode;

use plotters::prelude::*;

/// Where Debian's `fonts-dejavu-core` puts DejaVu Sans.
const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Image size in pixels.
const SIZE: (u32, u32) = (1000, 620);

/// One measured point.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    server: String,
    mode: String,
    in_flight: u32,
    rps: f64,
}

/// Parses the CSV; returns the rows or the first bad line.
fn parse(csv: &str) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (i, line) in csv.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("server") || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let bad = || {
            format!(
                "line {}: expected server,mode,sockets,window,rps,...: {line:?}",
                i + 1
            )
        };
        if f.len() < 5 {
            return Err(bad());
        }
        let sockets: u32 = f[2].parse().map_err(|_| bad())?;
        let window: u32 = f[3].parse().map_err(|_| bad())?;
        let rps: f64 = f[4].parse().map_err(|_| bad())?;
        rows.push(Row {
            server: f[0].to_owned(),
            mode: f[1].to_owned(),
            in_flight: sockets.saturating_mul(window),
            rps,
        });
    }
    Ok(rows)
}

/// Median of each (server, mode, in flight): one series per (server, mode), sorted
/// by requests in flight.
fn series(rows: &[Row]) -> BTreeMap<(String, String), Vec<(u32, f64)>> {
    let mut points: BTreeMap<(String, String), BTreeMap<u32, Vec<f64>>> = BTreeMap::new();
    for r in rows {
        points
            .entry((r.server.clone(), r.mode.clone()))
            .or_default()
            .entry(r.in_flight)
            .or_default()
            .push(r.rps);
    }
    points
        .into_iter()
        .map(|(key, by_x)| {
            let line = by_x
                .into_iter()
                .map(|(x, mut v)| {
                    v.sort_by(f64::total_cmp);
                    let n = v.len();
                    let median = if n % 2 == 1 {
                        v[n / 2]
                    } else {
                        (v[n / 2 - 1] + v[n / 2]) / 2.0
                    };
                    (x, median)
                })
                .collect();
            (key, line)
        })
        .collect()
}

/// The colour of a server's line: Corium blue, libcoap red, the ceiling grey.
fn colour(server: &str, index: usize) -> RGBColor {
    if server.starts_with("corium") {
        RGBColor(31, 119, 180)
    } else if server.starts_with("libcoap") {
        RGBColor(214, 39, 40)
    } else if server.starts_with("ceiling") {
        RGBColor(90, 90, 90)
    } else {
        let (r, g, b) = Palette99::pick(index).to_rgba().rgb();
        RGBColor(r, g, b)
    }
}

/// Draws the chart into `out`.
fn draw(
    lines: &BTreeMap<(String, String), Vec<(u32, f64)>>,
    out: &str,
    title: &str,
    text: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let max_x = lines
        .values()
        .flatten()
        .map(|p| p.0)
        .max()
        .unwrap_or(1)
        .max(2);
    let min_x = lines
        .values()
        .flatten()
        .map(|p| p.0)
        .min()
        .unwrap_or(1)
        .clamp(1, max_x / 2);
    let max_y = lines.values().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = BitMapBackend::new(out, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder
            .caption(title, ("sans-serif", 22))
            .x_label_area_size(45)
            .y_label_area_size(80);
    } else {
        builder.x_label_area_size(5).y_label_area_size(5);
    }
    let mut chart =
        builder.build_cartesian_2d((min_x..max_x.next_power_of_two()).log_scale(), 0f64..max_y)?;
    if text {
        chart
            .configure_mesh()
            .x_desc("requests in flight (sockets × window)")
            .y_desc("responses/s")
            .x_label_formatter(&|x| x.to_string())
            .y_label_formatter(&|y| format!("{:.0}k", y / 1000.0))
            .label_style(("sans-serif", 15))
            .draw()?;
    }
    // Without a font even the mesh's tick labels cannot be laid out: then only the
    // lines and markers are drawn.
    for (i, ((server, mode), points)) in lines.iter().enumerate() {
        let c = colour(server, i);
        let style = if mode == "NON" {
            ShapeStyle::from(&c).stroke_width(2)
        } else {
            ShapeStyle::from(&c).stroke_width(3)
        };
        let drawn = chart.draw_series(LineSeries::new(points.iter().copied(), style))?;
        if text {
            drawn
                .label(format!("{server} {mode}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        if mode == "NON" {
            chart.draw_series(
                points
                    .iter()
                    .map(|&p| TriangleMarker::new(p, 5, ShapeStyle::from(&c).filled())),
            )?;
        } else {
            chart.draw_series(
                points
                    .iter()
                    .map(|&p| Circle::new(p, 4, ShapeStyle::from(&c).filled())),
            )?;
        }
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Entry point.
fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut title = "CoAP GET over loopback UDP: throughput vs. requests in flight".to_owned();
    let mut font = DEFAULT_FONT.to_owned();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--title" => title = args.next().unwrap_or_default(),
            "--font" => font = args.next().unwrap_or_default(),
            "-h" | "--help" => {
                println!("usage: bench-plot IN.csv OUT.png [--title TEXT] [--font FILE.ttf]");
                return ExitCode::SUCCESS;
            }
            _ => positional.push(a),
        }
    }
    let [input, output] = positional.as_slice() else {
        eprintln!("usage: bench-plot IN.csv OUT.png [--title TEXT] [--font FILE.ttf]");
        return ExitCode::from(2);
    };
    let csv = match std::fs::read_to_string(input) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench-plot: cannot read {input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rows = match parse(&csv) {
        Ok(r) if !r.is_empty() => r,
        Ok(_) => {
            eprintln!("bench-plot: {input} has no data");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("bench-plot: {input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The font must live as long as the process: leaked once.
    let text = match std::fs::read(&font) {
        Ok(bytes) => {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        }
        Err(e) => {
            eprintln!("bench-plot: warning: no font ({font}: {e}); drawing without text");
            false
        }
    };
    match draw(&series(&rows), output, &title, text) {
        Ok(()) => {
            println!("wrote {output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-plot: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_per_point() {
        let csv = "server,mode,sockets,window,rps,p50_us,p99_us,lost\n\
                   corium,CON,2,1,100,1,1,0\ncorium,CON,2,1,300,1,1,0\ncorium,CON,2,1,200,1,1,0\n\
                   corium,CON,2,4,10,1,1,0\ncorium,CON,2,4,20,1,1,0\nlibcoap,NON,1,8,5,1,1,0\n";
        let s = series(&parse(csv).unwrap());
        assert_eq!(
            s[&("corium".to_owned(), "CON".to_owned())],
            vec![(2, 200.0), (8, 15.0)]
        );
        assert_eq!(s[&("libcoap".to_owned(), "NON".to_owned())], vec![(8, 5.0)]);
        assert!(parse("corium,CON,x,1,2").is_err());
    }
}
