// Eight schools, non-centred, with tau known (data).
functions {
#include prior_lpdf.stanfunctions
}
data {
  int<lower=2> J;
  array[J] real y;
  array[J] real<lower=0> sigma;
  int<lower=1, upper=3> mu_family;
  array[2] real mu_args;
  real<lower=0> tau;
}
parameters {
  real<lower=mu_lower_bound(mu_family, mu_args), upper=mu_upper_bound(mu_family, mu_args)> mu;
  array[J] real theta_tilde;
}
transformed parameters {
  array[J] real theta;
  for (j in 1:J) theta[j] = mu + tau * theta_tilde[j];
}
model {
  mu ~ mu_prior(mu_family, mu_args);
  theta_tilde ~ std_normal();
  y ~ normal(theta, sigma);
}
