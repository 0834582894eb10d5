//! The compound plan (docs/duty-board.md): `[site] plan` names an SVG drawn by the
//! installer. It is read and checked once, when the config is built, so
//! `check-config` and `run` refuse the same plans: the file must be an SVG
//! without scripts (the board shows it inline), at most [`MAX_PLAN_BYTES`],
//! and every `building` a household names must be drawn in it as
//! `id="building-<name>"`.

use super::source::Report;
use super::source::{Seg::I, Seg::K, Source};
use super::types::{GatewayFile, Registry};
use std::path::Path;
use std::sync::Arc;

/// Edge boxes serve the plan to phones: keep it small.
pub const MAX_PLAN_BYTES: usize = 512 * 1024;

/// Building names drawn in a plan: every `id="building-<name>"`.
pub fn buildings(svg: &str) -> Vec<String> {
    let mut out = Vec::new();
    for quote in ['"', '\''] {
        let pat = format!("id={quote}building-");
        let mut rest = svg;
        while let Some(i) = rest.find(&pat) {
            rest = &rest[i + pat.len()..];
            if let Some(end) = rest.find(quote) {
                out.push(rest[..end].to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Why a plan's text cannot be shown, if it cannot.
fn refuse(svg: &str) -> Option<String> {
    let lower = svg.to_ascii_lowercase();
    if !lower.contains("<svg") {
        return Some("is not an SVG (no <svg> element)".into());
    }
    if svg.len() > MAX_PLAN_BYTES {
        return Some(format!(
            "is {} bytes; a plan must stay under {} KiB (simplify the drawing)",
            svg.len(),
            MAX_PLAN_BYTES / 1024
        ));
    }
    for bad in [
        "<script",
        "javascript:",
        "<foreignobject",
        " onload=",
        " onclick=",
    ] {
        if lower.contains(bad) {
            return Some(format!(
                "contains {bad:?}: a plan is a drawing, without scripts or embedded pages"
            ));
        }
    }
    None
}

/// Reads `[site] plan` (relative to gateway.toml) into `plan_svg` and checks
/// the households' `building` names against it.
pub(super) fn load(
    gw_src: &Source,
    gw: &mut GatewayFile,
    reg_src: Option<&Source>,
    reg: Option<&Registry>,
    base: &Path,
    rep: &mut Report,
) {
    let Some(name) = gw.site.plan.clone() else {
        return;
    };
    let at = [K("site"), K("plan")];
    let path = base.join(&name);
    let svg = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            rep.errors
                .push(gw_src.error_at(&at, format!("cannot read plan {}: {e}", path.display())));
            return;
        }
    };
    if let Some(why) = refuse(&svg) {
        rep.errors
            .push(gw_src.error_at(&at, format!("plan {}: {why}", path.display())));
        return;
    }
    let drawn = buildings(&svg);
    if let (Some(src), Some(reg)) = (reg_src, reg) {
        for (i, h) in reg.households.iter().enumerate() {
            if let Some(b) = &h.building {
                if !drawn.contains(b) {
                    rep.errors.push(src.error_at(
                        &[K("households"), I(i), K("building")],
                        format!(
                            "building {b:?} of household {:?} is not on the plan {} (it has: {})",
                            h.id,
                            path.display(),
                            drawn.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    gw.site.plan_svg = Some(Arc::from(svg));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildings_are_the_ids_with_the_prefix() {
        let svg =
            r#"<svg><g id="building-3"><rect/></g><rect id='building-5'/><path id="gate"/></svg>"#;
        assert_eq!(buildings(svg), ["3", "5"]);
    }

    #[test]
    fn scripts_and_non_svg_are_refused() {
        assert!(refuse("<svg><script>alert(1)</script></svg>").is_some());
        assert!(refuse("<svg><a href=\"javascript:x\"/></svg>").is_some());
        assert!(refuse("<html></html>").is_some());
        assert!(refuse(&format!("<svg>{}</svg>", " ".repeat(MAX_PLAN_BYTES))).is_some());
        assert!(refuse("<svg><rect id=\"building-3\"/></svg>").is_none());
    }
}
