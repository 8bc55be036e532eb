module faktorypy/bench/fleet

go 1.25

require (
	github.com/contribsys/faktory v1.9.4
	github.com/contribsys/faktory_worker_go v1.7.0
)
