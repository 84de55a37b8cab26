//! End-to-end tests of qsess against real `redis-server` processes; one module per area.

mod harness_selftest;
