"""The original code of reproduced papers (copies where the license allows, else faithful
transliterations), runnable beside tinynet to check its builders against."""
