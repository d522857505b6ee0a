//! Integration tests of the real ckpt-watch binary against real processes.
