//! The self-contained HTML report (placeholder until the comparison report lands).
