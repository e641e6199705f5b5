// The console's pages. Each helper adds one import line per page and lists it below;
// the nav shows them in this order within their section.
import lots from './lots.js';
import seats from './seats.js';
import users from './users.js';
import seatReview from './seat-review.js';
import order from './order.js';
import documents from './documents.js';
import documentsView from './documents-view.js';
import payments from './payments.js';
import promotions from './promotions.js';
import crm from './crm.js';
import apiKeys from './api-keys.js';
import sdkKeys from './sdk-keys.js';
import webhooks from './webhooks.js';
import deliveries from './deliveries.js';
import recordings from './recordings.js';
import audit from './audit.js';
import usage from './usage.js';
import operatorSignIn from './operator-sign-in.js';
import operatorAccounts from './operator-accounts.js';
import operatorAccount from './operator-account.js';
import operatorTariffs from './operator-tariffs.js';
import operatorPromotions from './operator-promotions.js';
import operatorNode from './operator-node.js';

export default [
  lots,
  seats,
  users,
  seatReview,
  order,
  documents,
  documentsView,
  payments,
  promotions,
  crm,
  apiKeys,
  sdkKeys,
  webhooks,
  deliveries,
  recordings,
  audit,
  usage,
  operatorSignIn,
  operatorAccounts,
  operatorAccount,
  operatorTariffs,
  operatorPromotions,
  operatorNode,
];
