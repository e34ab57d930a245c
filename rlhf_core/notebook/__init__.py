"""Layer 5, what the notebooks show: HTML tables, the metric registry, figures, the live dashboard and widgets,
the exercises' checks and student copies, the static site and the Colab set-up. Nothing below imports it."""
