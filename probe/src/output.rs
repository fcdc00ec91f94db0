//! Output of `postflight-probe once` (in progress).
