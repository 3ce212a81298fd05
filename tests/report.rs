//! Run reports: metrics CSV round trips and errors, the PNG writers (size, content, atomic
//! write), the confusion table and per-class accuracy.
//!
//! Set `DLSVM_REPORT_SAMPLES=/some/dir` to also write sample charts there for a visual check.

use std::path::{Path, PathBuf};

use dlsvm::report::{
    confusion_png, confusion_png_size, confusion_table, filter_grid_png, learning_curve_png,
    per_class_accuracy, read_metrics, read_rows, write_metrics, write_rows, FilterGridLayout, MetricsCsv,
    MetricsRow, StepRow, CONFUSION_DARK, CURVE_HEIGHT, CURVE_WIDTH, FILTER_GAP_COLOR, METRICS_COLUMNS,
};

/// A fresh, empty scratch directory for one test (reused by the next run, so nothing piles up).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("dlsvm-report-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn row(epoch: f64, test: bool) -> MetricsRow {
    MetricsRow {
        epoch,
        step: (epoch * 100.0) as u64,
        lr: 0.01 / (1.0 + epoch),
        momentum: 0.9,
        train_loss: 1.0 / (1.0 + epoch) + 0.013,
        train_acc: 1.0 - 0.5 / (1.0 + epoch),
        test_loss: test.then(|| 1.2 / (1.0 + epoch) + 0.05),
        test_acc: test.then(|| 0.97 - 0.5 / (1.0 + epoch)),
        images_per_sec: 1234.5 + epoch,
        elapsed_s: 10.25 * epoch,
    }
}

fn class_names(k: usize) -> Vec<String> {
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        .iter()
        .cycle()
        .take(k)
        .map(|s| s.to_string())
        .collect()
}

/// A plausible confusion matrix: mostly diagonal, some confusion with the next class.
fn confusion_counts(k: usize, n: u64) -> Vec<Vec<u64>> {
    (0..k)
        .map(|i| {
            (0..k)
                .map(|j| {
                    if i == j {
                        n - (i as u64 * 37) % (n / 2)
                    } else if j == (i + 1) % k {
                        (i as u64 * 37) % (n / 2)
                    } else {
                        0
                    }
                })
                .collect()
        })
        .collect()
}

/// Decodes `path` (checking the size) and returns it as RGB.
fn load(path: &Path, width: u32, height: u32) -> image::RgbImage {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    assert_eq!((img.width(), img.height()), (width, height), "{}", path.display());
    assert!(!path.with_extension("png.tmp").exists(), "temporary file left behind");
    img
}

fn variance(img: &image::RgbImage) -> f64 {
    let values: Vec<f64> = img.pixels().flat_map(|p| p.0).map(f64::from).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / values.len() as f64
}

fn non_blank(path: &Path, width: u32, height: u32) -> image::RgbImage {
    let img = load(path, width, height);
    assert!(variance(&img) > 0.0, "{} is blank", path.display());
    img
}

// ---------------------------------------------------------------------------------------------
// metrics.csv

#[test]
fn metrics_csv_round_trip_across_reopen() {
    let dir = scratch("csv-round-trip");
    let path = dir.join("run/metrics.csv");
    let rows = vec![row(1.0, true), row(2.0, false), row(2.5, true), row(3.0, false)];
    {
        let mut csv = MetricsCsv::open(&path).unwrap();
        assert_eq!(csv.path(), path);
        csv.append(&rows[0]).unwrap();
        csv.append(&rows[1]).unwrap();
        // Flushed after every row: readable while the writer is still open.
        assert_eq!(read_metrics(&path).unwrap(), rows[..2]);
    }
    {
        let mut csv = MetricsCsv::open(&path).unwrap();
        csv.append(&rows[2]).unwrap();
        csv.append(&rows[3]).unwrap();
    }
    assert_eq!(read_metrics(&path).unwrap(), rows);

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], METRICS_COLUMNS.join(","));
    assert_eq!(lines.len(), 5, "one header and four rows:\n{text}");
    assert_eq!(text.matches("epoch,").count(), 1, "header written once:\n{text}");
    // None cells are empty.
    assert!(lines[2].contains(",0.9,") && lines[2].contains(",,"), "{}", lines[2]);
    assert_eq!(lines[2].split(',').nth(6), Some(""));
    assert_eq!(lines[2].split(',').nth(7), Some(""));
}

/// A kill during a row's write leaves a torn last line (rows are written whole, newline included):
/// dropped on reading, so `--resume` works; a bad row elsewhere is still an error.
#[test]
fn metrics_csv_torn_last_row_is_dropped() {
    let dir = scratch("csv-torn");
    let path = dir.join("metrics.csv");
    let rows = [row(1.0, true), row(2.0, false)];
    {
        let mut csv = MetricsCsv::open(&path).unwrap();
        csv.append(&rows[0]).unwrap();
        csv.append(&rows[1]).unwrap();
    }
    let full = std::fs::read(&path).unwrap();
    let last_start = full[..full.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    for cut in last_start + 1..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let got = read_metrics(&path).unwrap_or_else(|e| panic!("cut at byte {cut}: {e}"));
        assert_eq!(got, rows[..1], "cut at byte {cut}");
    }
    let header_end = full.iter().position(|&b| b == b'\n').unwrap();
    std::fs::write(&path, &full[..header_end / 2]).unwrap();
    assert_eq!(read_metrics(&path).unwrap(), vec![], "a torn header");
    let mut bad = full[..last_start].to_vec();
    bad.extend_from_slice(b"not,a,row\n");
    bad.extend_from_slice(&full[last_start..]);
    std::fs::write(&path, &bad).unwrap();
    let err = read_metrics(&path).unwrap_err();
    assert!(err.contains("metrics.csv:3:"), "{err}");
}

#[test]
fn metrics_csv_header_written_for_empty_existing_file() {
    let dir = scratch("csv-empty");
    let path = dir.join("metrics.csv");
    std::fs::write(&path, "").unwrap();
    assert_eq!(read_metrics(&path).unwrap(), vec![]);
    let mut csv = MetricsCsv::open(&path).unwrap();
    csv.append(&row(1.0, true)).unwrap();
    drop(csv);
    assert!(std::fs::read_to_string(&path).unwrap().starts_with("epoch,step,lr,momentum,"));
    assert_eq!(read_metrics(&path).unwrap(), vec![row(1.0, true)]);
    // Header only: no rows.
    let header_only = dir.join("header.csv");
    drop(MetricsCsv::open(&header_only).unwrap());
    assert_eq!(read_metrics(&header_only).unwrap(), vec![]);
}

#[test]
fn metrics_csv_exact_floats_and_non_finite_values() {
    let dir = scratch("csv-floats");
    let path = dir.join("metrics.csv");
    let mut r = row(0.1 + 0.2, true);
    r.lr = 1e-300;
    r.train_loss = f64::NAN;
    r.test_loss = Some(f64::INFINITY);
    r.step = u64::MAX;
    let mut csv = MetricsCsv::open(&path).unwrap();
    csv.append(&r).unwrap();
    let back = read_metrics(&path).unwrap();
    assert_eq!(back.len(), 1);
    let b = &back[0];
    assert_eq!(b.epoch.to_bits(), (0.1f64 + 0.2).to_bits());
    assert_eq!(b.lr, 1e-300);
    assert!(b.train_loss.is_nan());
    assert_eq!(b.test_loss, Some(f64::INFINITY));
    assert_eq!(b.step, u64::MAX);
}

#[test]
fn metrics_csv_cut_line_is_terminated_on_reopen() {
    let dir = scratch("csv-cut");
    let path = dir.join("metrics.csv");
    let mut csv = MetricsCsv::open(&path).unwrap();
    csv.append(&row(1.0, true)).unwrap();
    drop(csv);
    // A crash mid-row: the new row must not be glued onto the cut one.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("2,200,0.0");
    std::fs::write(&path, &text).unwrap();
    let mut csv = MetricsCsv::open(&path).unwrap();
    csv.append(&row(3.0, false)).unwrap();
    drop(csv);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    let err = read_metrics(&path).unwrap_err();
    assert!(err.contains(":3:"), "{err}");
}

#[test]
fn metrics_csv_refuses_to_append_to_a_foreign_file() {
    let dir = scratch("csv-foreign");
    let path = dir.join("notes.csv");
    std::fs::write(&path, "a,b,c\n1,2,3\n").unwrap();
    let err = MetricsCsv::open(&path).err().expect("a foreign file must be refused");
    assert!(err.to_string().contains("notes.csv"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "a,b,c\n1,2,3\n", "file untouched");
}

#[test]
fn write_metrics_replaces_the_file() {
    let dir = scratch("csv-rewrite");
    let path = dir.join("metrics.csv");
    let mut csv = MetricsCsv::open(&path).unwrap();
    for e in 1..=5 {
        csv.append(&row(e as f64, e % 2 == 0)).unwrap();
    }
    drop(csv);
    let kept: Vec<MetricsRow> = read_metrics(&path).unwrap().into_iter().take(3).collect();
    write_metrics(&path, &kept).unwrap();
    assert_eq!(read_metrics(&path).unwrap(), kept);
    assert!(!path.with_extension("csv.tmp").exists());
    // And appending continues after the rewrite.
    let mut csv = MetricsCsv::open(&path).unwrap();
    csv.append(&row(4.0, true)).unwrap();
    drop(csv);
    assert_eq!(read_metrics(&path).unwrap().len(), 4);
}

#[test]
fn malformed_metrics_name_the_file_and_line() {
    let dir = scratch("csv-malformed");
    let header = METRICS_COLUMNS.join(",");
    let good = "1,100,0.01,0.9,0.5,0.8,0.6,0.75,1000,12.5";
    let cases = [
        // (file contents, expected line, a word the message must contain)
        (format!("{header}\n{good}\n1,100,abc,0.9,0.5,0.8,,,1000,12.5\n"), 3, "lr"),
        (format!("{header}\n{good}\n{good}\n\n1,100,0.01\n"), 5, "columns"),
        (format!("{header}\n-1,100,0.01,0.9,0.5,0.8,,,1000,12.5\n1,2.5,0.01,0.9,0.5,0.8,,,1,1\n"), 3, "step"),
        (format!("{header}\n{good}\n1,100,0.01,0.9,0.5,0.8,x,,1000,12.5\n"), 3, "test_loss"),
        (format!("epoch,step,lr\n{good}\n"), 1, "header"),
    ];
    for (i, (text, line, word)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.csv"));
        std::fs::write(&path, text).unwrap();
        let err = read_metrics(&path).unwrap_err();
        assert!(err.contains(&format!("bad{i}.csv:{line}:")), "case {i}: {err}");
        assert!(err.contains(word), "case {i}: {err}");
    }
    let missing = read_metrics(&dir.join("missing.csv")).unwrap_err();
    assert!(missing.contains("missing.csv"), "{missing}");
}

// ---------------------------------------------------------------------------------------------
// Learning curve

#[test]
fn learning_curve_is_a_non_blank_png_of_the_right_size() {
    let dir = scratch("curve");
    let rows: Vec<MetricsRow> = (1..=30).map(|e| row(e as f64, e % 5 == 0)).collect();
    let path = dir.join("nested/dir/curve.png");
    learning_curve_png(&path, &rows, &[], "mnist - lenet").unwrap();
    let img = non_blank(&path, CURVE_WIDTH, CURVE_HEIGHT);
    // Both series colours appear somewhere (train blue, test orange).
    let has = |pred: &dyn Fn([u8; 3]) -> bool| img.pixels().any(|p| pred(p.0));
    assert!(has(&|c| c[2] > 150 && c[0] < 80), "no train (blue) curve");
    assert!(has(&|c| c[0] > 200 && c[1] > 80 && c[1] < 140 && c[2] < 60), "no test (orange) curve");

    // Overwriting works (rename over an existing file).
    learning_curve_png(&path, &rows[..3], &[], "again").unwrap();
    non_blank(&path, CURVE_WIDTH, CURVE_HEIGHT);
}

/// With per-interval rows the train curves are drawn from them (many points between epochs), the
/// test points from the epoch rows; steps.csv rows round-trip like metrics.csv rows.
#[test]
fn learning_curve_draws_the_train_curve_from_the_interval_rows() {
    let dir = scratch("curve-steps");
    let rows: Vec<MetricsRow> = (1..=3).map(|e| row(e as f64, true)).collect();
    let steps: Vec<StepRow> = (1..=60)
        .map(|s| StepRow {
            step: s * 5,
            epoch: s as f64 / 20.0,
            lr: 0.01,
            momentum: 0.9,
            loss: 2.0 / (1.0 + s as f64 / 10.0) + 0.1 * ((s % 7) as f64 / 7.0),
            accuracy: 1.0 - 0.8 / (1.0 + s as f64 / 10.0),
            images_per_sec: 900.0,
            elapsed_s: s as f64,
        })
        .collect();
    let (a, b) = (dir.join("epochs.png"), dir.join("steps.png"));
    learning_curve_png(&a, &rows, &[], "epochs only").unwrap();
    learning_curve_png(&b, &rows, &steps, "epochs only").unwrap();
    let (ia, ib) = (non_blank(&a, CURVE_WIDTH, CURVE_HEIGHT), non_blank(&b, CURVE_WIDTH, CURVE_HEIGHT));
    let blue = |img: &image::RgbImage| img.pixels().filter(|p| p.0[2] > 150 && p.0[0] < 80).count();
    assert!(
        blue(&ib) > blue(&ia),
        "the interval curve draws more train pixels: {} vs {}",
        blue(&ib),
        blue(&ia)
    );
    // Intervals alone (a run shorter than an epoch) still give a curve.
    let c = dir.join("no-epochs.png");
    learning_curve_png(&c, &[], &steps[..10], "before the first epoch").unwrap();
    assert!(blue(&non_blank(&c, CURVE_WIDTH, CURVE_HEIGHT)) > 0, "no train curve without epoch rows");
    let path = dir.join("steps.csv");
    write_rows(&path, &steps).unwrap();
    assert_eq!(read_rows::<StepRow>(&path).unwrap(), steps);
    assert!(
        read_rows::<MetricsRow>(&path).unwrap_err().contains("expected the header"),
        "a steps.csv is not a metrics.csv"
    );
}

#[test]
fn learning_curve_handles_empty_single_and_odd_inputs() {
    let dir = scratch("curve-odd");
    let p = dir.join("empty.png");
    learning_curve_png(&p, &[], &[], "no rows yet").unwrap();
    non_blank(&p, CURVE_WIDTH, CURVE_HEIGHT);

    let p = dir.join("single.png");
    learning_curve_png(&p, &[row(1.0, false)], &[], "one row").unwrap();
    non_blank(&p, CURVE_WIDTH, CURVE_HEIGHT);

    // Constant values, NaN and infinite losses, percent accuracies, a loss spanning decades.
    let mut rows: Vec<MetricsRow> = (0..10).map(|e| row(e as f64, true)).collect();
    rows[3].train_loss = f64::NAN;
    rows[4].test_loss = Some(f64::INFINITY);
    for r in &mut rows {
        r.train_acc *= 100.0;
        r.test_acc = r.test_acc.map(|a| a * 100.0);
    }
    for (i, r) in rows.iter_mut().enumerate() {
        r.train_loss = 50.0 * 0.1f64.powi(i as i32);
    }
    let p = dir.join("odd.png");
    learning_curve_png(&p, &rows, &[], &"a very long title ".repeat(10)).unwrap();
    non_blank(&p, CURVE_WIDTH, CURVE_HEIGHT);

    let flat: Vec<MetricsRow> = (0..4)
        .map(|e| MetricsRow { epoch: 2.0, train_loss: 0.0, train_acc: 1.0, ..row(e as f64, false) })
        .collect();
    let p = dir.join("flat.png");
    learning_curve_png(&p, &flat, &[], "flat").unwrap();
    non_blank(&p, CURVE_WIDTH, CURVE_HEIGHT);
}

// ---------------------------------------------------------------------------------------------
// Filter grid

#[test]
fn filter_grid_layout_is_about_square_with_40px_cells() {
    let l = FilterGridLayout::new(20, 5, 5).unwrap();
    assert_eq!((l.cols, l.rows, l.scale, l.cell_w, l.cell_h), (5, 4, 8, 40, 40));
    assert!((1..=2).contains(&l.gap));
    assert_eq!(l.width, 5 * 40 + 6 * l.gap);
    assert_eq!(l.height, 4 * 40 + 5 * l.gap);
    let l = FilterGridLayout::new(16, 3, 3).unwrap();
    assert_eq!((l.cols, l.rows, l.scale), (4, 4, 13));
    let l = FilterGridLayout::new(1, 64, 64).unwrap();
    assert_eq!((l.cols, l.rows, l.scale), (1, 1, 1));
    assert!(FilterGridLayout::new(0, 5, 5).is_none());
    assert!(FilterGridLayout::new(4, 0, 5).is_none());
}

#[test]
fn filter_grid_shows_a_single_bright_pixel_in_place() {
    let dir = scratch("filters");
    let (out, inp, kh, kw) = (6, 2, 5, 4);
    // Everything -0.3, except filter 4, channel 0, weight (1, 3) = 2.0; channel 1 is noise that
    // must not show (channel 0 is drawn).
    let mut w = vec![-0.3f32; out * inp * kh * kw];
    for o in 0..out {
        for i in 0..kh * kw {
            w[(o * inp + 1) * kh * kw + i] = (i as f32 * 0.77).sin() * 5.0;
        }
        // Give every other filter some structure so they are not all constant.
        if o != 4 && o != 5 {
            w[o * inp * kh * kw] = 1.0;
        }
    }
    w[(4 * inp) * kh * kw + kw + 3] = 2.0;
    let path = dir.join("filters.png");
    filter_grid_png(&path, &w, out, inp, kh, kw).unwrap();
    let l = FilterGridLayout::new(out, kh, kw).unwrap();
    let img = non_blank(&path, l.width, l.height);

    let at = |(x, y): (u32, u32)| img.get_pixel(x, y).0;
    assert_eq!(at(l.weight_pixel(4, 1, 3)), [255, 255, 255], "the bright weight is white");
    for y in 0..kh {
        for x in 0..kw {
            if (y, x) != (1, 3) {
                assert_eq!(at(l.weight_pixel(4, y, x)), [0, 0, 0], "weight ({y}, {x}) of filter 4");
            }
        }
    }
    // The whole block of the bright weight is white, and stops at its edge.
    let (ox, oy) = l.cell_origin(4);
    let s = l.scale;
    assert_eq!(at((ox + 3 * s, oy + s)), [255, 255, 255]);
    assert_eq!(at((ox + 4 * s - 1, oy + 2 * s - 1)), [255, 255, 255]);
    assert_eq!(at((ox + 3 * s - 1, oy + s)), [0, 0, 0]);
    assert_eq!(at((ox + 3 * s, oy + 2 * s)), [0, 0, 0]);
    // Gaps around cells.
    assert_eq!(at((ox - 1, oy)), FILTER_GAP_COLOR);
    assert_eq!(at((0, 0)), FILTER_GAP_COLOR);
    // A constant filter is mid grey.
    assert_eq!(at(l.weight_pixel(5, 2, 2)), [128, 128, 128]);
    // Filter 0 has its top-left weight bright.
    assert_eq!(at(l.weight_pixel(0, 0, 0)), [255, 255, 255]);
    assert_eq!(at(l.weight_pixel(0, 4, 3)), [0, 0, 0]);
    // Unused cells of the grid are gap colour: 7 filters in a 3x3 grid leave two.
    let path7 = dir.join("filters7.png");
    filter_grid_png(&path7, &vec![0.5; 7 * 9], 7, 1, 3, 3).unwrap();
    let l7 = FilterGridLayout::new(7, 3, 3).unwrap();
    let img7 = non_blank(&path7, l7.width, l7.height);
    let (ux, uy) = l7.cell_origin(8);
    assert_eq!(img7.get_pixel(ux + 5, uy + 5).0, FILTER_GAP_COLOR);
}

#[test]
fn filter_grid_rejects_bad_shapes() {
    let dir = scratch("filters-bad");
    let p = dir.join("f.png");
    assert!(filter_grid_png(&p, &[], 0, 1, 5, 5).is_err());
    assert!(filter_grid_png(&p, &[], 4, 1, 0, 5).is_err());
    assert!(filter_grid_png(&p, &[], 4, 0, 5, 5).is_err());
    let err = filter_grid_png(&p, &[0.0; 10], 4, 1, 5, 5).unwrap_err();
    assert!(err.contains("100"), "{err}");
    assert!(!p.exists());
    // Non-finite weights do not break the normalization of the others.
    let mut w = vec![0.0f32; 2 * 9];
    w[0] = f32::NAN;
    w[1] = 1.0;
    filter_grid_png(&p, &w, 2, 1, 3, 3).unwrap();
    let l = FilterGridLayout::new(2, 3, 3).unwrap();
    let img = non_blank(&p, l.width, l.height);
    let (x, y) = l.weight_pixel(0, 0, 1);
    assert_eq!(img.get_pixel(x, y).0, [255, 255, 255]);
}

// ---------------------------------------------------------------------------------------------
// Confusion matrix

#[test]
fn per_class_accuracy_is_row_recall() {
    let counts = vec![vec![8, 2, 0], vec![0, 0, 0], vec![1, 1, 2]];
    let acc = per_class_accuracy(&counts);
    assert_eq!(acc.len(), 3);
    assert!((acc[0].unwrap() - 0.8).abs() < 1e-12);
    assert_eq!(acc[1], None);
    assert!((acc[2].unwrap() - 0.5).abs() < 1e-12);
    assert!(per_class_accuracy(&[]).is_empty());
    assert_eq!(per_class_accuracy(&[vec![0]]), vec![None]);
    assert_eq!(per_class_accuracy(&[vec![5]]), vec![Some(1.0)]);
}

#[test]
fn confusion_table_lists_names_counts_and_recall() {
    let names: Vec<String> = ["cat", "dog", "hippopotamus"].iter().map(|s| s.to_string()).collect();
    let counts = vec![vec![8, 2, 0], vec![0, 0, 0], vec![1, 12345, 2]];
    let t = confusion_table(&names, &counts);
    let lines: Vec<&str> = t.lines().collect();
    // Header: predicted names, the long one cut to 8 characters.
    assert!(lines[0].contains("cat") && lines[0].contains("dog"), "{t}");
    assert!(lines[0].contains("hippopot") && !lines[0].contains("hippopota"), "{t}");
    assert!(lines[0].contains('%'), "{t}");
    // One row per true class with its counts and recall.
    let cells = |i: usize| lines[i].split_whitespace().collect::<Vec<_>>();
    assert_eq!(cells(1), ["cat", "8", "2", "0", "80.0"], "{t}");
    assert_eq!(cells(2), ["dog", "0", "0", "0", "-"], "{t}");
    assert_eq!(cells(3), ["hippopot", "1", "12345", "2", "0.0"], "{t}");
    // Columns line up: every count ends where its header name ends.
    let head_end = lines[0].find("dog").unwrap() + 3;
    assert_eq!(lines[3].find("12345").unwrap() + 5, head_end, "{t}");
    assert!(t.contains("overall accuracy: 0.08% (10/12358)"), "{t}");
    // Degenerate inputs never panic.
    assert!(confusion_table(&[], &[]).contains("empty"));
    let t = confusion_table(&[], &[vec![3, 1], vec![0]]);
    assert!(t.contains('0') && t.contains("75.0"), "{t}");
}

#[test]
fn confusion_png_is_non_blank_with_shaded_cells() {
    let dir = scratch("confusion");
    for k in [1usize, 2, 3, 10, 40] {
        let names = class_names(k);
        let counts = confusion_counts(k, 1000);
        let path = dir.join(format!("k{k}/confusion.png"));
        let title = format!("confusion k={k}");
        confusion_png(&path, &names, &counts, &title).unwrap();
        let (w, h) = confusion_png_size(&names, &title).unwrap();
        assert!(w >= k as u32 * 12 && h >= k as u32 * 12, "{w}x{h}");
        let img = non_blank(&path, w, h);
        // A cell holding a whole row is dark blue.
        if k == 1 {
            assert!(img.pixels().any(|p| p.0 == CONFUSION_DARK));
        }
    }
    // An all-zero matrix still draws.
    let p = dir.join("zeros.png");
    confusion_png(&p, &class_names(3), &vec![vec![0; 3]; 3], "zeros").unwrap();
    let (w, h) = confusion_png_size(&class_names(3), "zeros").unwrap();
    non_blank(&p, w, h);
}

#[test]
fn confusion_png_rejects_bad_input() {
    let dir = scratch("confusion-bad");
    let p = dir.join("c.png");
    assert!(confusion_png(&p, &[], &[], "empty").unwrap_err().contains("k = 0"));
    assert!(confusion_png(&p, &class_names(2), &[vec![1, 2], vec![3]], "ragged").is_err());
    assert!(confusion_png(&p, &class_names(3), &[vec![1, 2], vec![3, 4]], "names").is_err());
    assert!(confusion_png_size(&[], "x").is_err());
    assert!(!p.exists());
}

// ---------------------------------------------------------------------------------------------
// Samples for a visual check

#[test]
fn write_samples_when_asked() {
    let Some(dir) = std::env::var_os("DLSVM_REPORT_SAMPLES").map(PathBuf::from) else {
        return;
    };
    let rows: Vec<MetricsRow> = (1..=30).map(|e| row(e as f64, e % 3 == 0)).collect();
    learning_curve_png(&dir.join("curve.png"), &rows, &[], "MNIST lenet-svm: lr 0.01 (batch 128)").unwrap();
    learning_curve_png(&dir.join("curve_empty.png"), &[], &[], "no data yet").unwrap();
    let mut decades: Vec<MetricsRow> = (0..12).map(|e| row(e as f64 * 0.5, true)).collect();
    for (i, r) in decades.iter_mut().enumerate() {
        r.train_loss = 20.0 * 0.5f64.powi(i as i32);
    }
    learning_curve_png(&dir.join("curve_log.png"), &decades, &[], "loss over decades").unwrap();
    learning_curve_png(&dir.join("curve_one.png"), &[row(1.0, true)], &[], "one row").unwrap();

    let (out, kh, kw) = (32, 5, 5);
    // Oriented gratings, like trained first-layer filters.
    let w: Vec<f32> = (0..out * kh * kw)
        .map(|i| {
            let (o, y, x) = (i / (kh * kw), (i / kw) % kh, i % kw);
            let t = o as f32 * 0.4;
            let f = 0.6 + (o % 4) as f32 * 0.3;
            ((x as f32 * t.cos() + y as f32 * t.sin()) * f).sin() * (1.0 + o as f32)
        })
        .collect();
    filter_grid_png(&dir.join("filters.png"), &w, out, 1, kh, kw).unwrap();

    for k in [3usize, 10, 40] {
        let names = class_names(k);
        let counts = confusion_counts(k, 1000);
        confusion_png(
            &dir.join(format!("confusion{k}.png")),
            &names,
            &counts,
            &format!("CIFAR-10 test (k={k})"),
        )
        .unwrap();
        if k == 10 {
            println!("{}", confusion_table(&names, &counts));
        }
    }
    let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    confusion_png(&dir.join("confusion_digits.png"), &digits, &confusion_counts(10, 980), "MNIST test")
        .unwrap();
}
