//! The web view's tests (browser.rs), under a harness that can report a
//! test as not run: the browser test needs Chromium, and where there is
//! none it is reported as ignored, with the reason, and counted in the
//! summary line, instead of passing without having run. With
//! GOSSIPNET_REQUIRE_BROWSER=1 (as `.ci/run` sets it) a missing Chromium
//! is a failure instead.

#[path = "../common/mod.rs"]
mod common;

#[cfg(unix)]
mod browser;

use common::harness::{needs, test};

/// Why the browser test cannot run here, if it cannot.
fn browser_missing() -> Option<String> {
    #[cfg(unix)]
    let missing = browser::find_chromium().is_none().then(|| {
        "needs Chromium, and none is on PATH: apt-get install chromium, or run .ci/run".to_owned()
    });
    #[cfg(not(unix))]
    let missing = Some("it drives Chromium over a Unix pipe pair".to_owned());
    missing
}

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let mut trials = Vec::new();
    #[cfg(unix)]
    trials.extend([
        test(
            "base64_png::decodes_with_and_without_padding",
            browser::base64_png::decodes_with_and_without_padding,
        ),
        test(
            "the_web_api_refuses_cross_site_and_rebinding_requests_and_serves_its_page",
            browser::the_web_api_refuses_cross_site_and_rebinding_requests_and_serves_its_page,
        ),
    ]);
    trials.push(needs(
        "clicking_kill_turns_a_peer_red_then_removes_it_from_the_graph",
        browser_missing(),
        "GOSSIPNET_REQUIRE_BROWSER",
        || {
            #[cfg(unix)]
            browser::clicking_kill_turns_a_peer_red_then_removes_it_from_the_graph(
                &browser::find_chromium().expect("found before the test"),
            );
        },
    ));
    libtest_mimic::run(&args, trials).exit();
}
