use crate::check::testkit::*;
use crate::check::{check, render_text, CheckName, VIOLATIONS_KEPT_MAX};

#[test]
fn the_report_lists_checks_violations_and_summary() {
    let mut h = Hist::new();
    h.admit("ana", 1_000, (2, 0));
    let text = render_text(&assert_valid(&h.input()));
    assert!(text.starts_with("overall: valid"), "{text}");
    for name in [CheckName::Replay, CheckName::Money, CheckName::Indefinite] {
        assert!(text.contains(name.as_str()), "{text}");
    }
    assert!(text.contains("decisions: 1 admitted"), "{text}");
}

#[test]
fn the_report_caps_violations() {
    let mut h = Hist::new();
    let extra = 10;
    for _ in 0..VIOLATIONS_KEPT_MAX + extra {
        h.read(5, 0);
    }
    let verdicts = check(&h.input());
    let text = render_text(&verdicts);
    assert!(text.starts_with("overall: INVALID"), "{text}");
    assert!(
        text.contains(&format!("[capacity] ... and {extra} more")),
        "{text}"
    );
}
