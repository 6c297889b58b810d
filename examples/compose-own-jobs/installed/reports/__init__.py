"""An installable package of job functions (``reports.jobs:registry``), built into an image
derived from Conveyor's by ../Dockerfile."""
