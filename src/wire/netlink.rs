//! rtnetlink messages (placeholder until the codec lands).
