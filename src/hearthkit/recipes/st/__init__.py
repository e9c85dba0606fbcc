"""Speech translation (st): cascade asr -> mt, or end to end; see docs/st.md."""
