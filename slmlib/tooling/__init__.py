"""The course's tooling, apart from the library a student reads: the course runner, the set-up
checks, grading (its sandbox, its reports), the benchmark, the lesson check, the student release and the
nbgrader export. The command line (`python -m slmlib`) reaches all of them."""
