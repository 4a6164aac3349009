//! For the test files with their own harness (libtest-mimic): tests that
//! need something the machine may lack are reported as ignored, with the
//! reason, and counted in the summary line, rather than passing without
//! having run; CI makes such a skip a failure.

use libtest_mimic::{Completion, Failed, Trial};

/// A test that runs only where `missing` is None. Elsewhere it is ignored
/// with that reason, or fails when the environment variable `require_env`
/// says that it must run (`.ci/run` sets these).
pub fn needs(
    name: &str,
    missing: Option<String>,
    require_env: &'static str,
    test: impl FnOnce() + Send + 'static,
) -> Trial {
    let required = std::env::var_os(require_env).is_some_and(|v| !v.is_empty() && v != "0");
    Trial::ignorable_test(name, move || match missing {
        None => {
            test();
            Ok(Completion::Completed)
        }
        Some(reason) if required => Err(Failed::from(format!(
            "{require_env} is set, so this test must run, but it cannot: {reason}"
        ))),
        Some(reason) => Ok(Completion::ignored_with(reason)),
    })
}

/// A test that always runs.
pub fn test(name: &str, test: impl FnOnce() + Send + 'static) -> Trial {
    Trial::test(name, move || {
        test();
        Ok(())
    })
}
