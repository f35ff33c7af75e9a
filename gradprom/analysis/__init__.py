"""Reading results: Pareto ranks, fronts and hypervolume (`pareto`, moocore), statistics and a protocol's evidence
(`stats`, `evidence`), terminal tables, plots and the HTML report (`tables`, `plots`, `report`), and a trial run
again beside its recorded figures (`rerun`). Never imports Ray or Optuna (a test checks), so a laptop without Ray
reads any experiment."""
