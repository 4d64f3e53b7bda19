package differential

import (
	_ "github.com/ciliaproject/cilia/conformance/target/model"
)

// The targets the differential tests compare: the model is the oracle.
const (
	Oracle         = "model"
	Implementation = "testrun"
)
